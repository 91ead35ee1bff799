// What a person who opens an enrollment link sees: the code, and how to run the device agent with it
// (docs/monitoring.md). The code stays in the URL fragment, which the browser never sends to a server.

import { $, copyText } from './dom.js';

// Codes look like K7QF-M2XD; anything else is not shown, nor put into a command.
const CODE_RE = /^[A-Za-z0-9][A-Za-z0-9-]{2,63}$/;

function codeFromHash(hash = location.hash) {
  for (const part of hash.replace(/^#/, '').split('&')) {
    if (!part.startsWith('code=')) continue;
    try {
      return decodeURIComponent(part.slice(5)).trim();
    } catch {
      return '';
    }
  }
  return '';
}

function render() {
  const code = codeFromHash();
  const ok = CODE_RE.test(code);
  $('#enroll-missing').hidden = ok;
  $('#enroll-ready').hidden = !ok;
  if (!ok) return;
  // Rebuilt from parts we checked, not copied from the address bar: the command goes into a shell.
  const link = `${location.origin}/enroll#code=${encodeURIComponent(code)}`;
  $('#code').textContent = code;
  $('#command').textContent = `telemed device --enroll '${link}' --sim pulse-oximeter`;
  $('#command-code').textContent = `telemed device --server ${location.origin} --enroll ${code} --sim pulse-oximeter`;
}

$('#copy-command').addEventListener('click', async () => {
  const command = $('#command');
  const status = $('#copy-status');
  if (await copyText(command.textContent)) {
    status.textContent = 'Command copied.';
  } else {
    status.textContent = 'Your browser didn’t allow copying. The command is selected: copy it with Ctrl+C (⌘C on a Mac).';
    selectText(command);
  }
});

function selectText(node) {
  const range = document.createRange();
  range.selectNodeContents(node);
  const selection = getSelection();
  selection.removeAllRanges();
  selection.addRange(range);
}

window.addEventListener('hashchange', render);
render();
