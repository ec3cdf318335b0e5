// Drives Petrel's dashboard in headless Chromium through playwright-core, for
// dashboard_test.go. It speaks the line protocol of peer_test.go: it prints
// {"ev":"ready"} once the browser runs, then answers each JSON command on
// standard input with one line {"ev":"<op>", ...} or {"ev":"error", ...}.
//
//	{"op":"goto","url":"..."}                  load a page; answers its url
//	{"op":"wait","js":"(arg) => ...","arg":...,"timeout":ms}
//	                                           until the function returns a truthy value, polled in the
//	                                           page every 50 ms; answers that value
//	{"op":"eval","js":"(arg) => ...","arg":...}  answers the function's value
//	{"op":"click","selector":"..."}            clicks an element (playwright selector)
//	{"op":"fill","selector":"...","value":"..."} types into a field
//	{"op":"viewport","width":w,"height":h}
//	{"op":"problems"}                          answers what went wrong in the page so far: uncaught
//	                                           errors, console errors, refused requests
//
// Environment: CHROMIUM is the browser (default /usr/bin/chromium);
// SCREENSHOT, if set, is where a PNG of the whole page is saved on exit.
'use strict'

const readline = require('node:readline')
const { launch } = require('./chromium')

const DEFAULT_TIMEOUT = 20000

function emit (event) {
  process.stdout.write(JSON.stringify(event) + '\n')
}

// pageFunction turns the source of a function of one argument into a
// function playwright can send to the page.
function pageFunction (js) {
  // eslint-disable-next-line no-new-func
  return new Function('arg', `return (${js})(arg)`)
}

async function main () {
  const browser = await launch()
  const page = await browser.newPage({ viewport: { width: 1024, height: 768 } })
  const problems = []
  let current = 'start' // the command under way, for the problems' context
  page.on('pageerror', (err) => problems.push('uncaught: ' + err.message))
  page.on('console', (msg) => {
    process.stderr.write(`page console ${msg.type()}: ${msg.text()}\n`)
    if (msg.type() === 'error') {
      problems.push('console: ' + msg.text())
    }
  })
  page.on('requestfinished', async (req) => {
    const res = await req.response().catch(() => null)
    process.stderr.write(`${current}: ${req.method()} ${req.url()} ${res ? res.status() : '?'}\n`)
  })
  page.on('requestfailed', (req) => {
    const why = req.failure() && req.failure().errorText
    const line = `request failed (during ${current}): ${req.method()} ${req.url()}: ${why}`
    // Leaving a page aborts what it still had in flight (a 401 held back
    // by the broker's failed-login delay, say): the browser's doing, not
    // the page's.
    if (current.startsWith('goto ') && why === 'net::ERR_ABORTED') {
      process.stderr.write(line + ' (left the page)\n')
      return
    }
    problems.push(line)
  })

  let closing = null
  const close = async () => {
    closing = closing || (async () => {
      if (process.env.SCREENSHOT) {
        await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true }).catch(() => {})
      }
      await browser.close().catch(() => {})
    })()
    return closing
  }
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, () => close().then(() => process.exit(1)))
  }

  emit({ ev: 'ready', client: `Chromium ${browser.version()}` })

  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
  for await (const line of lines) {
    if (line.trim() === '') {
      continue
    }
    const cmd = JSON.parse(line)
    const timeout = cmd.timeout || DEFAULT_TIMEOUT
    current = cmd.op + (cmd.url ? ' ' + cmd.url : '')
    try {
      let reply = {}
      switch (cmd.op) {
        case 'goto':
          await page.goto(cmd.url, { waitUntil: 'load', timeout })
          reply = { value: page.url() }
          break
        case 'wait': {
          const handle = await page.waitForFunction(pageFunction(cmd.js), cmd.arg, { polling: 50, timeout })
          reply = { value: await handle.jsonValue() }
          break
        }
        case 'eval':
          reply = { value: await page.evaluate(pageFunction(cmd.js), cmd.arg) }
          break
        case 'click':
          await page.click(cmd.selector, { timeout })
          break
        case 'fill':
          await page.fill(cmd.selector, cmd.value, { timeout })
          break
        case 'viewport':
          await page.setViewportSize({ width: cmd.width, height: cmd.height })
          break
        case 'problems':
          reply = { value: problems.slice() }
          break
        default:
          throw new Error('unknown op ' + cmd.op)
      }
      emit({ ev: cmd.op, ...reply })
    } catch (err) {
      emit({ ev: 'error', op: cmd.op, error: String(err && err.message ? err.message : err) })
    }
  }
  await close()
  process.exit(0)
}

main().catch((err) => {
  process.stderr.write(`dashboard_driver: ${err && err.stack ? err.stack : err}\n`)
  process.exit(1)
})
