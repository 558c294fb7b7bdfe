"""GBNF grammars (llama.cpp's grammar format) from JSON schemas and regular
expressions, without I/O: the embedded engine enforces output with them, and so do the
text backends whose servers take a grammar (KoboldCpp, llama.cpp, llama-cpp-python,
text-generation-webui)."""
