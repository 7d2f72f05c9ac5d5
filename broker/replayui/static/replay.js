// Plays every sealed terminal cast on a jitgate replay page with
// asciinema-player. Loaded from the page's own origin (CSP script-src 'self').
"use strict";
window.jitgatePlayers = [];
for (const el of document.querySelectorAll("div.player[data-src]")) {
  window.jitgatePlayers.push(AsciinemaPlayer.create(el.dataset.src, el, {
    autoPlay: true, preload: true, idleTimeLimit: 2, fit: "width", controls: true,
  }));
}
