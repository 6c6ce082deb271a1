// Countersign: the document page's upload form, sent by XMLHttpRequest so that a <progress> bar
// can follow the upload (fetch has no upload progress). Progressive enhancement only: without
// this script the same form posts and the page comes back. Served by the binary under a hashed
// name with its integrity (crates/web/src/ui/assets.rs); no inline script anywhere (the CSP).
// Loaded by signed-in pages only (templates/base.html). htmx-boosted navigation swaps the body but
// never the head, so a visit whose first page is public must enter with a full page load (the
// portal link's form is not boosted) or this script would never arrive on the pages after it.
// The one listener is delegated on `document`, so forms swapped in later are taken over too.
(function () {
  'use strict';

  function say(form, text, tone) {
    var box = form.querySelector('[data-upload-status]');
    if (!box) return;
    box.className = 'notice ' + tone;
    box.hidden = false;
    box.textContent = text;
  }

  // The words of a refusal page (its heading and explanation), never its markup.
  function refusalWords(html) {
    try {
      var doc = new DOMParser().parseFromString(html, 'text/html');
      var main = doc.querySelector('main') || doc.body;
      var h = main.querySelector('h1');
      var p = main.querySelector('p');
      return [h ? h.textContent.trim() : '', p ? p.textContent.trim() : ''].filter(Boolean).join(': ');
    } catch (e) {
      return '';
    }
  }

  function addRow(form, html) {
    var table = document.getElementById('attachments-table');
    var body = table && table.tBodies[0];
    if (!body) {
      // The first attachment: the section has no table yet; the page itself shows it.
      window.location.reload();
      return;
    }
    var holder = document.createElement('tbody');
    holder.innerHTML = html.trim();
    var row = holder.querySelector('tr');
    if (row) body.appendChild(row);
    var empty = document.getElementById('attachments-empty');
    if (empty) empty.hidden = true;
    if (table) table.hidden = false;
  }

  document.addEventListener('submit', function (ev) {
    var form = ev.target;
    if (!(form instanceof HTMLFormElement) || !form.hasAttribute('data-upload')) return;
    if (!window.FormData || !window.XMLHttpRequest) return;
    ev.preventDefault();
    var bar = form.querySelector('progress');
    var button = form.querySelector('button[type=submit]');
    var events = 0;
    var xhr = new XMLHttpRequest();
    xhr.open('POST', form.action);
    xhr.setRequestHeader('X-Upload', 'row');
    if (bar) {
      bar.hidden = false;
      bar.value = 0;
    }
    if (button) button.disabled = true;
    say(form, 'Uploading…', 'warning');
    xhr.upload.addEventListener('progress', function (e) {
      events += 1;
      form.setAttribute('data-progress-events', String(events));
      if (bar && e.lengthComputable) {
        bar.max = e.total;
        bar.value = e.loaded;
      }
    });
    xhr.addEventListener('load', function () {
      if (button) button.disabled = false;
      if (xhr.status === 201) {
        if (bar) bar.value = bar.max;
        addRow(form, xhr.responseText);
        form.reset();
        say(form, 'The file was attached.', 'success');
        form.setAttribute('data-uploaded', String(Number(form.getAttribute('data-uploaded') || '0') + 1));
      } else {
        var words = refusalWords(xhr.responseText) || ('The upload was refused (' + xhr.status + ').');
        say(form, words + ' Nothing was stored.', 'error');
      }
    });
    xhr.addEventListener('error', function () {
      if (button) button.disabled = false;
      say(form, 'The upload did not reach the server. Nothing was stored; try again.', 'error');
    });
    xhr.send(new FormData(form));
  });
})();
