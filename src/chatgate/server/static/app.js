// The page's start: the tabs at once, then each panel from the admin API. A panel that
// cannot load says why in the alert bar; the others still work.
import { setupAuth } from './auth.js';
import { setupConnections } from './connections.js';
import { inspectorShown, setupInspector } from './inspector.js';
import { loadModels, setupPlayground } from './playground.js';
import { alertError } from './status.js';
import { setupTabs } from './tabs.js';
import { loadUsage, setupUsage } from './usage.js';

// What each panel reads again when it is shown (the models of a connection are known
// only after its first status or models call, which may come after the last event).
const shown = {
  playground: () => loadModels().catch(alertError),
  inspector: inspectorShown,
  usage: loadUsage,
};

let ready = false;

// No form of the page is ever submitted by the browser itself: a GET submission would
// put its fields (a key) into the URL. method="dialog" forms only close their dialog.
document.addEventListener('submit', (event) => {
  if (event.target.getAttribute('method') !== 'dialog') event.preventDefault();
}, true);

async function start() {
  setupAuth();
  setupInspector();
  setupUsage();
  setupTabs((name) => {
    if (ready) shown[name]?.();
  });
  // The connections first: with keys configured, their call is the one that asks for
  // the admin key, which the playground's models call then finds.
  for (const setup of [setupConnections, setupPlayground]) {
    try {
      await setup();
    } catch (error) {
      alertError(error);
    }
  }
  ready = true;
  document.body.dataset.ready = 'true';
  const hash = window.location.hash.slice(1);
  if (hash in shown) shown[hash]();
}

start();
