// Petrel's dashboard. It polls the admin API every second with the bearer
// token (EventSource could not send the header) and shows what it answers.
// Whatever comes from the broker (client ids, user names, addresses) goes
// into the page as text or attribute values, never as HTML.
'use strict'

const TOKEN_KEY = 'petrel.token' // in sessionStorage: this tab only
const POLL_MS = 1000
const WINDOW_S = 15 * 60 // the chart's width in time
const MAX_POINTS = 900 // one a second over the window
const CLIENTS_EVERY_MS = 5000 // the client list is reloaded less often
const PAGE_SIZE = 50
const SERIES = ['in', 'out', 'dropped']

const $ = (id) => document.getElementById(id)
const numbers = new Intl.NumberFormat()

let token = null
let timer = null
// generation changes on each sign-in and sign-out, so that the answer to a
// request made before is ignored.
let generation = 0

// Unauthorized is thrown by api on a 401: the token is wrong, or was
// changed on the broker.
class Unauthorized extends Error {}

// api sends a request to /api/v1/path with the token and returns the
// status, the JSON body (null if none) and the server's clock.
async function api (path, options = {}) {
  const res = await fetch('api/v1/' + path, {
    ...options,
    headers: { Authorization: 'Bearer ' + token, Accept: 'application/json' },
    cache: 'no-store',
    credentials: 'omit'
  })
  if (res.status === 401) {
    await res.text().catch(() => {}) // read to its end: the request is over
    throw new Unauthorized('the token was refused')
  }
  let body = null
  if ((res.headers.get('Content-Type') || '').startsWith('application/json')) {
    body = await res.json().catch(() => null)
  }
  return { status: res.status, body, date: Date.parse(res.headers.get('Date') || '') }
}

// errorOf is what an API error says.
function errorOf (r) {
  return (r.body && typeof r.body.error === 'string') ? r.body.error : 'HTTP ' + r.status
}

// ---- Signing in and out ----------------------------------------------------

// takeTokenFromFragment keeps a token given as /#token=… and takes it out of
// the address bar (and so out of the history and of links copied from it).
function takeTokenFromFragment () {
  const params = new URLSearchParams(location.hash.slice(1))
  const t = params.get('token')
  if (t === null) {
    return
  }
  params.delete('token')
  const rest = params.toString()
  history.replaceState(history.state, '', location.pathname + location.search + (rest ? '#' + rest : ''))
  if (t.trim() !== '') {
    sessionStorage.setItem(TOKEN_KEY, t.trim())
  }
}

// signIn starts polling with t. The dashboard shows once the broker has
// answered something other than 401.
function signIn (t) {
  token = t
  sessionStorage.setItem(TOKEN_KEY, t)
  generation++
  clearTimeout(timer)
  poll()
}

// signOut forgets the token and shows the login form, with why.
function signOut (why) {
  generation++
  clearTimeout(timer)
  token = null
  sessionStorage.removeItem(TOKEN_KEY)
  last = null
  if ($('kick-dialog').open) {
    $('kick-dialog').close()
  }
  $('dashboard').hidden = true
  $('sign-out').hidden = true
  $('login').hidden = false
  $('login-error').textContent = why || ''
  $('token-input').value = ''
  $('token-input').focus()
}

function showDashboard () {
  if (!$('dashboard').hidden) {
    return
  }
  $('login').hidden = true
  $('login-error').textContent = ''
  $('dashboard').hidden = false
  $('sign-out').hidden = false
  drawChart()
}

// ---- Polling -----------------------------------------------------------------

async function poll () {
  const gen = generation
  const started = performance.now()
  try {
    const [stats, listeners] = await Promise.all([api('stats'), api('listeners')])
    if (gen !== generation) {
      return
    }
    showDashboard()
    showStats(stats)
    showListeners(listeners)
    clearStatus('error')
    if (clientsDue()) {
      await loadClients()
    }
  } catch (err) {
    if (gen !== generation) {
      return
    }
    if (err instanceof Unauthorized) {
      signOut('The broker refused the token. Enter it again.')
      return
    }
    showDashboard()
    setStatus('Cannot reach the broker: ' + err.message, 'error')
  }
  if (gen === generation) {
    timer = setTimeout(poll, Math.max(0, POLL_MS - (performance.now() - started)))
  }
}

// setStatus shows a line above the dashboard; kind says what may clear it.
function setStatus (text, kind) {
  const el = $('status')
  if (el.textContent === text && el.dataset.kind === kind) {
    return // unchanged: a screen reader is not told again every second
  }
  el.textContent = text
  el.dataset.kind = kind
}

function clearStatus (kind) {
  if ($('status').dataset.kind === kind) {
    setStatus('', '')
  }
}

// ---- Statistics --------------------------------------------------------------

const CARDS = {
  'stat-connections': 'clients_connected',
  'stat-sessions': 'sessions',
  'stat-subscriptions': 'subscriptions',
  'stat-retained': 'retained_messages',
  'stat-held-back': 'held_back_connections'
}

function showStats (r) {
  const s = r.status === 200 && r.body && typeof r.body === 'object' ? r.body : null
  for (const [id, field] of Object.entries(CARDS)) {
    $(id).textContent = s ? count(s[field]) : '—'
  }
  $('version').textContent = s && typeof s.version === 'string' ? s.version : '—'
  const node = s && typeof s.node === 'string' ? s.node : ''
  $('node').textContent = node || '—'
  $('node-about').hidden = !node // the broker's node name, when it says one
  $('uptime').textContent = s ? uptime(s.start_time, r.date) : '—'
  if (!s) {
    last = null
    const why = r.status === 501
      ? 'This broker serves no statistics (GET /api/v1/stats answers 501): no counts, no rates.'
      : 'No statistics: ' + errorOf(r) + '.'
    setStatus(why, 'stats')
    for (const k of SERIES) {
      $('rate-' + k).textContent = '—'
    }
    return
  }
  clearStatus('stats')
  sample(s, performance.now() / 1000)
}

function count (v) {
  return typeof v === 'number' && Number.isFinite(v) ? numbers.format(v) : '—'
}

// uptime is the time from start (RFC 3339) to the server's clock (ms).
function uptime (start, serverNow) {
  const t0 = Date.parse(start || '')
  if (Number.isNaN(t0) || new Date(t0).getUTCFullYear() < 2000) {
    return '—' // not started (Go's zero time), or unknown
  }
  const now = Number.isNaN(serverNow) ? Date.now() : serverNow
  return duration(Math.max(0, Math.floor((now - t0) / 1000)))
}

// duration writes seconds as its two largest units: "3 d 4 h", "12 min 5 s".
function duration (secs) {
  const units = [['d', 86400], ['h', 3600], ['min', 60], ['s', 1]]
  const parts = []
  for (const [name, size] of units) {
    if (secs >= size || (parts.length === 0 && size === 1)) {
      parts.push(Math.floor(secs / size) + ' ' + name)
      secs %= size
    } else if (parts.length > 0) {
      break
    }
    if (parts.length === 2) {
      break
    }
  }
  return parts.join(' ')
}

// ---- Rates and the chart ---------------------------------------------------

// points are the rates of the last WINDOW_S seconds, oldest first: {t (s,
// this page's clock), in, out, dropped}, a rate being null where unknown (a
// gap: the broker restarted, or did not say).
const points = []
// last holds the counters of the previous sample.
let last = null

function total (v) {
  if (Array.isArray(v)) {
    return v.reduce((a, b) => a + (typeof b === 'number' ? b : 0), 0)
  }
  return typeof v === 'number' ? v : null
}

// droppedTotal sums messages_dropped's reasons but no_subscribers: a
// message nobody subscribed to is no loss worth a red line.
function droppedTotal (m) {
  if (!m || typeof m !== 'object') {
    return null
  }
  let n = 0
  for (const [reason, v] of Object.entries(m)) {
    if (reason !== 'no_subscribers' && typeof v === 'number') {
      n += v
    }
  }
  return n
}

function sample (s, t) {
  const now = {
    t,
    start: s.start_time,
    in: total(s.messages_received),
    out: total(s.messages_sent),
    dropped: droppedTotal(s.messages_dropped)
  }
  if (last && last.start === now.start && now.t > last.t) {
    const p = { t }
    for (const k of SERIES) {
      const d = now[k] !== null && last[k] !== null ? now[k] - last[k] : -1
      p[k] = d >= 0 ? d / (now.t - last.t) : null
    }
    points.push(p)
  } else if (last) {
    points.push({ t, in: null, out: null, dropped: null })
  }
  last = now
  while (points.length > MAX_POINTS || (points.length > 0 && points[0].t < t - WINDOW_S)) {
    points.shift()
  }
  const latest = points.length ? points[points.length - 1] : null
  for (const k of SERIES) {
    $('rate-' + k).textContent = latest ? rate(latest[k]) : '—'
  }
  drawChart()
}

function rate (v) {
  if (typeof v !== 'number') {
    return '—'
  }
  return (v < 10 ? v.toFixed(1) : numbers.format(Math.round(v))) + '/s'
}

// niceCeil is the smallest of 1, 2, 5 × 10^n at least v (1 at least).
function niceCeil (v) {
  if (!(v > 1)) {
    return 1
  }
  const e = Math.pow(10, Math.floor(Math.log10(v)))
  for (const m of [1, 2, 5, 10]) {
    if (m * e >= v) {
      return m * e
    }
  }
  return 10 * e
}

const SVG = 'http://www.w3.org/2000/svg'

function svgEl (name, attrs, text) {
  const el = document.createElementNS(SVG, name)
  for (const [k, v] of Object.entries(attrs)) {
    el.setAttribute(k, String(v))
  }
  if (text !== undefined) {
    el.textContent = text
  }
  return el
}

// drawChart draws the points at the chart's size in pixels: the x axis is
// the last WINDOW_S seconds up to now, the y axis from 0 to a round number
// above the highest rate shown.
function drawChart () {
  const svg = $('chart')
  const w = Math.max(svg.clientWidth, 120)
  const h = Math.max(svg.clientHeight, 80)
  svg.setAttribute('viewBox', `0 0 ${w} ${h}`)
  const left = 48
  const right = 8
  const top = 8
  const bottom = 20
  const pw = w - left - right
  const ph = h - top - bottom
  const now = performance.now() / 1000
  let max = 0
  for (const p of points) {
    for (const k of SERIES) {
      if (p[k] !== null) {
        max = Math.max(max, p[k])
      }
    }
  }
  const ymax = niceCeil(max)
  const x = (t) => left + pw * (1 - (now - t) / WINDOW_S)
  const y = (v) => top + ph * (1 - v / ymax)

  const grid = []
  for (const v of [0, ymax / 2, ymax]) {
    grid.push(svgEl('line', { x1: left, x2: w - right, y1: y(v), y2: y(v), class: 'grid' }))
    grid.push(svgEl('text', { x: left - 6, y: y(v) + 4, class: 'axis', 'text-anchor': 'end' }, numbers.format(v)))
  }
  for (const [ago, label] of [[900, '−15 min'], [600, '−10 min'], [300, '−5 min'], [0, 'now']]) {
    const anchor = ago === 900 ? 'start' : ago === 0 ? 'end' : 'middle'
    grid.push(svgEl('text', { x: x(now - ago), y: h - 4, class: 'axis', 'text-anchor': anchor }, label))
  }
  $('chart-grid').replaceChildren(...grid)

  for (const k of SERIES) {
    let d = ''
    let pen = false
    for (const p of points) {
      if (p[k] === null) {
        pen = false
        continue
      }
      d += (pen ? 'L' : 'M') + x(p.t).toFixed(1) + ' ' + y(p[k]).toFixed(1)
      pen = true
    }
    $('chart-' + k).setAttribute('d', d)
  }
  const latest = points.length ? points[points.length - 1] : null
  $('chart-desc').textContent = latest
    ? `Now ${rate(latest.in)} in, ${rate(latest.out)} out, ${rate(latest.dropped)} dropped; the scale goes to ${numbers.format(ymax)} a second.`
    : 'No rates yet.'
}

// ---- Listeners ---------------------------------------------------------------

// row makes a table row of text cells; numbers are right-aligned.
function row (cells, colspan) {
  const tr = document.createElement('tr')
  for (const c of cells) {
    const td = document.createElement('td')
    td.textContent = typeof c === 'number' ? numbers.format(c) : c
    if (typeof c === 'number') {
      td.className = 'num'
    }
    if (colspan) {
      td.colSpan = colspan
    }
    tr.appendChild(td)
  }
  return tr
}

function showListeners (r) {
  const list = r.status === 200 && r.body && Array.isArray(r.body.listeners) ? r.body.listeners : null
  if (!list) {
    $('listeners').replaceChildren(row([r.status === 503 ? 'Not open yet.' : 'Not available: ' + errorOf(r)], 4))
    return
  }
  $('listeners').replaceChildren(...list.map((l) => row([
    String(l.name),
    String(l.kind),
    String(l.address) + (l.websocket_path ? ', path ' + l.websocket_path : ''),
    typeof l.connections === 'number' ? l.connections : '—'
  ])))
}

// ---- Clients -------------------------------------------------------------------

// cursors[i] is the cursor of page i; page is the one shown.
let cursors = ['']
let page = 0
let clientsLoaded = -Infinity
let clientsSeq = 0
// clientRows keeps each client's row between reloads, so that a button
// under the pointer stays the same element.
let clientRows = new Map()

function clientsDue () {
  return performance.now() - clientsLoaded >= CLIENTS_EVERY_MS && !$('kick-dialog').open
}

async function loadClients () {
  const seq = ++clientsSeq
  const q = new URLSearchParams({ limit: String(PAGE_SIZE) })
  const prefix = $('client-prefix').value
  if (prefix !== '') {
    q.set('prefix', prefix)
  }
  if ($('client-connected').checked) {
    q.set('connected', 'true')
  }
  if (cursors[page]) {
    q.set('cursor', cursors[page])
  }
  const r = await api('clients?' + q)
  if (seq !== clientsSeq) {
    return // a newer search has been sent
  }
  clientsLoaded = performance.now()
  if (r.status !== 200 || !r.body || !Array.isArray(r.body.clients)) {
    showClients([], r.date)
    showEmpty('The list is not available: ' + errorOf(r) + '.')
    return
  }
  showClients(r.body.clients, r.date)
  const next = r.body.next_cursor || ''
  cursors.length = page + 1
  if (next) {
    cursors.push(next)
  }
  $('clients-prev').disabled = page === 0
  $('clients-next').disabled = !next
  $('clients-page').textContent = 'page ' + (page + 1)
  if (r.body.clients.length === 0) {
    showEmpty(next ? 'None on this page; more may follow.' : (page === 0 ? 'No clients.' : 'No more clients.'))
  } else {
    showEmpty('')
  }
}

function showEmpty (text) {
  $('clients-empty').textContent = text
  $('clients-empty').hidden = text === ''
}

// reloadClients reloads the list now, from the first page when restart.
function reloadClients (restart) {
  if (restart) {
    cursors = ['']
    page = 0
  }
  loadClients().catch(failed)
}

// failed handles an error of a request made on the user's behalf.
function failed (err) {
  if (err instanceof Unauthorized) {
    signOut('The broker refused the token. Enter it again.')
  } else {
    setStatus('Cannot reach the broker: ' + err.message, 'error')
  }
}

function showClients (clients, serverNow) {
  const rows = new Map()
  const trs = []
  for (const c of clients) {
    const id = String(c.client_id)
    if (rows.has(id)) {
      continue
    }
    const tr = clientRows.get(id) || newClientRow()
    fillClientRow(tr, c, id, serverNow)
    rows.set(id, tr)
    trs.push(tr)
  }
  clientRows = rows
  $('clients').replaceChildren(...trs)
}

const CLIENT_CELLS = 8

function newClientRow () {
  const tr = document.createElement('tr')
  for (let i = 0; i < CLIENT_CELLS; i++) {
    tr.appendChild(document.createElement('td'))
  }
  tr.cells[6].className = 'num'
  tr.cells[7].className = 'num'
  const td = document.createElement('td')
  const button = document.createElement('button')
  button.type = 'button'
  button.className = 'kick'
  td.appendChild(button)
  tr.appendChild(td)
  return tr
}

function fillClientRow (tr, c, id, serverNow) {
  const since = c.connected ? c.connected_since : c.disconnected_since
  const cells = [
    id,
    (c.connected ? 'connected' : 'offline') + (c.held_back ? ', held back' : ''),
    typeof c.username === 'string' ? c.username : '',
    typeof c.address === 'string' ? c.address : '',
    typeof c.protocol === 'string' ? c.protocol : '',
    since ? ago(since, serverNow) : '',
    count(c.subscriptions),
    count(c.queued)
  ]
  cells.forEach((text, i) => { tr.cells[i].textContent = text })
  tr.cells[5].title = since || ''
  tr.dataset.clientId = id
  tr.classList.toggle('offline', !c.connected)
  const button = tr.querySelector('button')
  button.textContent = c.connected ? 'Disconnect' : 'Discard'
  button.setAttribute('aria-label', (c.connected ? 'Disconnect ' : 'Discard the session of ') + id)
  button.onclick = () => openKick(id, Boolean(c.connected))
}

// ago is how long before the server's clock an RFC 3339 time was.
function ago (time, serverNow) {
  const t = Date.parse(time)
  if (Number.isNaN(t)) {
    return ''
  }
  const now = Number.isNaN(serverNow) ? Date.now() : serverNow
  return duration(Math.max(0, Math.floor((now - t) / 1000))) + ' ago'
}

// ---- Kicking ---------------------------------------------------------------------

let kickTarget = null

function openKick (id, connected) {
  kickTarget = { id, connected }
  $('kick-title').textContent = connected ? `Disconnect “${id}”?` : `Discard the session of “${id}”?`
  $('kick-what').textContent = connected
    ? 'An MQTT 5 client gets DISCONNECT 0x98 (Administrative action); an MQTT 3 client sees its connection close. Its will is published. It may connect again.'
    : 'It is not connected. Its subscriptions and queued messages go, and a will waiting for its delay is published.'
  $('kick-discard').checked = false
  $('kick-discard-row').hidden = !connected
  $('kick-confirm').textContent = connected ? 'Disconnect' : 'Discard session'
  $('kick-dialog').showModal()
}

async function confirmKick () {
  const target = kickTarget
  $('kick-dialog').close()
  if (!target) {
    return
  }
  const discard = !target.connected || $('kick-discard').checked
  const path = 'clients/' + encodeURIComponent(target.id) + (discard ? '?session=discard' : '')
  const r = await api(path, { method: 'DELETE' })
  if (r.status === 200) {
    const session = r.body && r.body.session
    setStatus(target.connected
      ? `Disconnected “${target.id}”; its session was ${session}.`
      : `Discarded the session of “${target.id}”.`, 'notice')
  } else if (r.status === 404) {
    setStatus(`“${target.id}” is gone already.`, 'notice')
  } else {
    setStatus(`Could not disconnect “${target.id}”: ${errorOf(r)}.`, 'notice')
  }
  reloadClients(false)
}

// ---- Start ---------------------------------------------------------------------------

function debounce (fn, ms) {
  let t = null
  return () => {
    clearTimeout(t)
    t = setTimeout(fn, ms)
  }
}

function main () {
  $('login-form').addEventListener('submit', (e) => {
    e.preventDefault()
    const t = $('token-input').value.trim()
    if (t !== '') {
      $('login-error').textContent = 'Checking the token…'
      signIn(t)
    }
  })
  $('sign-out').addEventListener('click', () => signOut(''))
  $('client-search').addEventListener('submit', (e) => {
    e.preventDefault()
    reloadClients(true)
  })
  $('client-prefix').addEventListener('input', debounce(() => reloadClients(true), 300))
  $('client-connected').addEventListener('change', () => reloadClients(true))
  $('clients-prev').addEventListener('click', () => {
    page = Math.max(0, page - 1)
    reloadClients(false)
  })
  $('clients-next').addEventListener('click', () => {
    if (page + 1 < cursors.length) {
      page++
      reloadClients(false)
    }
  })
  $('kick-cancel').addEventListener('click', () => $('kick-dialog').close())
  $('kick-confirm').addEventListener('click', () => confirmKick().catch(failed))
  $('kick-dialog').addEventListener('close', () => { kickTarget = null })
  new ResizeObserver(() => drawChart()).observe($('chart'))
  // A /#token=… link opened in a tab that shows the page already.
  window.addEventListener('hashchange', () => {
    if (new URLSearchParams(location.hash.slice(1)).has('token')) {
      takeTokenFromFragment()
      const t = sessionStorage.getItem(TOKEN_KEY)
      if (t) {
        signIn(t)
      }
    }
  })

  takeTokenFromFragment()
  const t = sessionStorage.getItem(TOKEN_KEY)
  if (t) {
    signIn(t)
  } else {
    signOut('')
  }
}

main()
