// The chat page of `gemforge serve`: streams /v1/chat/completions (SSE), keeps
// conversations and settings in localStorage, asks for the API key on a 401.
// Plain DOM, no framework: the page must work with no network access.
'use strict';

const $ = (id) => document.getElementById(id);
const STORE = 'gemforge.chat.v1', SETTINGS = 'gemforge.settings.v1', KEY = 'gemforge.apiKey';
const SETTING_FIELDS = { 'system-prompt': 'value', temperature: 'value', 'top-p': 'value', 'max-tokens': 'value', thinking: 'checked' };

let state = load(STORE, { conversations: [], activeId: null });
let modelName = 'gemma';
let streaming = null;  // { controller, conv, msg } while a reply streams

function load(key, fallback) {
  try { return JSON.parse(localStorage.getItem(key)) || fallback; } catch (e) { return fallback; }
}
function save() { localStorage.setItem(STORE, JSON.stringify(state)); }
function active() { return state.conversations.find((c) => c.id === state.activeId) || null; }
function headers() {
  const h = { 'Content-Type': 'application/json' };
  const key = localStorage.getItem(KEY);
  if (key) h.Authorization = 'Bearer ' + key;
  return h;
}
function showError(text) { $('error').textContent = text; $('error').hidden = !text; }

// --- API key: a 401 opens the dialog; the key is kept for the next visits.
function askKey() {
  return new Promise((resolve) => {
    const dlg = $('key-dialog');
    dlg.addEventListener('close', () => {
      const k = $('api-key').value.trim();
      if (k) localStorage.setItem(KEY, k);
      $('api-key').value = '';
      resolve(!!k);
    }, { once: true });
    if (!dlg.open) dlg.showModal();
  });
}

async function fetchModel() {
  for (let tries = 0; tries < 3; ++tries) {
    let res;
    try { res = await fetch('/v1/models', { headers: headers() }); } catch (e) { showError('cannot reach the server: ' + e.message); return; }
    if (res.status === 401) { if (!(await askKey())) return; continue; }
    if (!res.ok) { showError('GET /v1/models: HTTP ' + res.status); return; }
    const ids = ((await res.json()).data || []).map((m) => m.id);
    modelName = ids[0] || modelName;
    $('model-name').textContent = modelName;
    // Several models (LoRA adapters beside the base): the request's "model" picks one.
    const select = $('model-select');
    select.textContent = '';
    for (const id of ids) select.append(new Option(id, id));
    select.hidden = ids.length < 2;
    showError('');
    return;
  }
}

// --- Settings, restored from and saved to localStorage.
function loadSettings() {
  const s = load(SETTINGS, {});
  for (const [id, prop] of Object.entries(SETTING_FIELDS)) if (id in s) $(id)[prop] = s[id];
}
function saveSettings() {
  const s = {};
  for (const [id, prop] of Object.entries(SETTING_FIELDS)) s[id] = $(id)[prop];
  localStorage.setItem(SETTINGS, JSON.stringify(s));
}
function number(id, fallback) {
  const v = parseFloat($(id).value);
  return Number.isFinite(v) ? v : fallback;
}

// --- Rendering.
function button(label, onClick) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.addEventListener('click', onClick);
  return b;
}

function renderList() {
  const ul = $('conversations');
  ul.textContent = '';
  for (const c of [...state.conversations].sort((a, b) => b.updated - a.updated)) {
    const li = document.createElement('li');
    li.className = c.id === state.activeId ? 'active' : '';
    const title = document.createElement('span');
    title.textContent = c.title || 'New chat';
    li.append(title, button('\u00d7', (e) => { e.stopPropagation(); removeConversation(c.id); }));
    li.lastChild.title = 'Delete';
    li.addEventListener('click', () => { if (!streaming) { state.activeId = c.id; save(); render(); } });
    ul.append(li);
  }
}

function fillMessage(div, m) {
  div.querySelector('.text').textContent = m.content;
  const details = div.querySelector('details');
  if (m.reasoning) {
    details.hidden = false;
    details.querySelector('.thinking').textContent = m.reasoning;
  }
  div.querySelector('.note').textContent = m.note || '';
}

function messageView(conv, m, i) {
  const div = document.createElement('div');
  div.className = 'msg ' + m.role;
  const role = document.createElement('div');
  role.className = 'role';
  role.textContent = m.role === 'user' ? 'You' : modelName;
  // Gemma 4's thinking (reasoning_content), folded: open it to read.
  const details = document.createElement('details');
  details.hidden = true;
  details.innerHTML = '<summary>Thinking</summary><div class="thinking"></div>';
  const text = document.createElement('div');
  text.className = 'text';
  const note = document.createElement('div');
  note.className = 'note';
  const actions = document.createElement('div');
  actions.className = 'actions';
  actions.append(button('Copy', () => copy(m.content)));
  if (m.role === 'user') actions.append(button('Edit', () => edit(conv, i, div)));
  if (m.role === 'assistant' && i === conv.messages.length - 1) actions.append(button('Regenerate', () => regenerate(conv)));
  div.append(role, details, text, note, actions);
  fillMessage(div, m);
  return div;
}

function render() {
  renderList();
  const box = $('messages');
  box.textContent = '';
  const conv = active();
  if (conv) conv.messages.forEach((m, i) => box.append(messageView(conv, m, i)));
  box.scrollTop = box.scrollHeight;
  $('send').hidden = !!streaming;
  $('stop').hidden = !streaming;
  document.body.dataset.streaming = streaming ? '1' : '0';
}

// --- Actions.
function copy(text) {
  if (navigator.clipboard && window.isSecureContext) return navigator.clipboard.writeText(text);
  const t = document.createElement('textarea');  // plain http on another host: no Clipboard API
  t.value = text;
  document.body.append(t);
  t.select();
  document.execCommand('copy');
  t.remove();
}

function edit(conv, i, div) {
  if (streaming) return;
  const area = document.createElement('textarea');
  area.value = conv.messages[i].content;
  area.rows = 3;
  const actions = div.querySelector('.actions');
  actions.textContent = '';
  actions.append(button('Save & send', () => {
    conv.messages[i].content = area.value;
    conv.messages.length = i + 1;  // the replies after an edited message no longer follow from it
    generate(conv);
  }), button('Cancel', render));
  div.querySelector('.text').replaceWith(area);
  area.focus();
}

function regenerate(conv) {
  if (streaming) return;
  if (conv.messages.length && conv.messages[conv.messages.length - 1].role === 'assistant') conv.messages.pop();
  generate(conv);
}

function removeConversation(id) {
  if (streaming && streaming.conv.id === id) return;
  state.conversations = state.conversations.filter((c) => c.id !== id);
  if (state.activeId === id) state.activeId = null;
  save();
  render();
}

function newConversation() {
  const conv = { id: Date.now().toString(36) + Math.random().toString(36).slice(2, 6), title: '', messages: [], updated: Date.now() };
  state.conversations.push(conv);
  state.activeId = conv.id;
  return conv;
}

function send() {
  const text = $('input').value.trim();
  if (!text || streaming) return;
  const conv = active() || newConversation();
  if (!conv.title) conv.title = text.slice(0, 48);
  conv.messages.push({ role: 'user', content: text });
  $('input').value = '';
  generate(conv);
}

function requestBody(conv) {
  const messages = [];
  const system = $('system-prompt').value.trim();
  if (system) messages.push({ role: 'system', content: system });
  for (const m of conv.messages) messages.push({ role: m.role, content: m.content });
  const body = {
    model: modelName, messages, stream: true,
    temperature: number('temperature', 0.7), top_p: number('top-p', 1), max_tokens: Math.max(1, Math.round(number('max-tokens', 512))),
  };
  // Only Gemma 4 has a thinking switch; the server refuses the field for other models.
  if ($('thinking').checked) body.chat_template_kwargs = { enable_thinking: true };
  return body;
}

// Streams one assistant reply into conv. Stop aborts the fetch: the server sees
// the connection close and cancels the request (its KV blocks are freed).
async function generate(conv, retried) {
  showError('');
  const body = requestBody(conv);
  const msg = { role: 'assistant', content: '', reasoning: '' };
  conv.messages.push(msg);
  conv.updated = Date.now();
  streaming = { controller: new AbortController(), conv, msg };
  save();
  render();
  const view = $('messages').lastChild;
  view.classList.add('streaming');
  let askForKey = false;
  try {
    const res = await fetch('/v1/chat/completions', { method: 'POST', headers: headers(), body: JSON.stringify(body), signal: streaming.controller.signal });
    if (res.status === 401) {
      askForKey = true;
    } else if (!res.ok) {
      let text = 'HTTP ' + res.status;
      try { text = (await res.json()).error.message || text; } catch (e) { /* not JSON */ }
      throw new Error(text);
    } else {
      await readStream(res, msg, view);
    }
  } catch (e) {
    if (e.name === 'AbortError') msg.note = 'stopped';
    else { msg.note = 'error'; showError(e.message); }
  } finally {
    streaming = null;
    if (askForKey || (!msg.content && !msg.reasoning && msg.note === 'error')) conv.messages.pop();
    save();
    render();
  }
  if (askForKey && !retried && (await askKey())) generate(conv, true);
}

async function readStream(res, msg, view) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    let end;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const event = buf.slice(0, end);
      buf = buf.slice(end + 2);
      for (const line of event.split('\n')) {
        if (!line.startsWith('data:')) continue;
        const data = line.slice(5).trim();
        if (data === '[DONE]') return;
        const j = JSON.parse(data);
        if (j.error) throw new Error(j.error.message || 'the server reported an error');
        const c = j.choices && j.choices[0];
        if (!c) continue;
        const d = c.delta || {};
        if (d.content) msg.content += d.content;
        if (d.reasoning_content) msg.reasoning += d.reasoning_content;
        if (c.finish_reason === 'length') msg.note = 'stopped at max tokens';
        fillMessage(view, msg);
        const box = $('messages');
        box.scrollTop = box.scrollHeight;
      }
    }
    save();
  }
}

// --- Wiring.
$('composer').addEventListener('submit', (e) => { e.preventDefault(); send(); });
$('input').addEventListener('keydown', (e) => {
  if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) { e.preventDefault(); send(); }
});
$('stop').addEventListener('click', () => { if (streaming) streaming.controller.abort(); });
$('new-chat').addEventListener('click', () => { if (!streaming) { state.activeId = null; save(); render(); $('input').focus(); } });
$('forget-key').addEventListener('click', () => localStorage.removeItem(KEY));
$('model-select').addEventListener('change', (e) => { modelName = e.target.value; $('model-name').textContent = modelName; });
for (const id of Object.keys(SETTING_FIELDS)) $(id).addEventListener('change', saveSettings);
loadSettings();
render();
fetchModel();
