// The sections as a WAI-ARIA tablist: arrow keys, Home and End move between tabs and
// show them at once (automatic activation); only the selected tab is in the Tab order.
import { byId } from './dom.js';

/** Wire the tablist; *onShow(name)* runs whenever a panel is shown. */
export function setupTabs(onShow) {
  const list = byId('tabs');
  const tabs = [...list.querySelectorAll('[role="tab"]')];

  function select(tab, focus) {
    for (const other of tabs) {
      const on = other === tab;
      other.setAttribute('aria-selected', String(on));
      other.tabIndex = on ? 0 : -1;
      byId(other.getAttribute('aria-controls')).hidden = !on;
    }
    if (focus) tab.focus();
    if (window.location.hash !== `#${tab.dataset.panel}`) {
      window.history.replaceState(null, '', `#${tab.dataset.panel}`);
    }
    onShow(tab.dataset.panel);
  }

  list.addEventListener('click', (event) => {
    const tab = event.target.closest('[role="tab"]');
    if (tab) select(tab, true);
  });
  list.addEventListener('keydown', (event) => {
    const index = tabs.indexOf(document.activeElement);
    if (index < 0) return;
    const moves = {
      ArrowRight: (index + 1) % tabs.length,
      ArrowLeft: (index - 1 + tabs.length) % tabs.length,
      Home: 0,
      End: tabs.length - 1,
    };
    if (!(event.key in moves)) return;
    event.preventDefault();
    select(tabs[moves[event.key]], true);
  });

  const start = tabs.find((tab) => `#${tab.dataset.panel}` === window.location.hash) || tabs[0];
  select(start, false);
  return {
    show(name) {
      const tab = tabs.find((t) => t.dataset.panel === name);
      if (tab) select(tab, false);
    },
  };
}
