// An MQTT client in headless Chromium: page.html runs MQTT.js over
// WebSocket, served by a local HTTP server started here, and this driver
// relays the line protocol of peer_test.go to it through playwright-core.
//
// Environment: CHROMIUM is the browser (default /usr/bin/chromium);
// SCREENSHOT, if set, is where a PNG of the page is saved on exit.
'use strict'

const fs = require('node:fs')
const http = require('node:http')
const path = require('node:path')
const readline = require('node:readline')
const { launch } = require('./chromium')

const FILES = {
  '/': [path.join(__dirname, 'page.html'), 'text/html; charset=utf-8'],
  '/mqtt.min.js': [path.join(path.dirname(require.resolve('mqtt/package.json')), 'dist', 'mqtt.min.js'), 'text/javascript'],
  '/peer_core.js': [path.join(__dirname, 'peer_core.js'), 'text/javascript']
}

function emit (event) {
  process.stdout.write(JSON.stringify(event) + '\n')
}

function serve () {
  const server = http.createServer((req, res) => {
    const file = FILES[new URL(req.url, 'http://localhost').pathname]
    if (!file) {
      res.writeHead(404).end()
      return
    }
    res.writeHead(200, { 'Content-Type': file[1], 'Cache-Control': 'no-store' })
    fs.createReadStream(file[0]).pipe(res)
  })
  return new Promise((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve(server))
  })
}

async function main () {
  const server = await serve()
  const browser = await launch()
  let page = null
  let closing = null
  const close = async () => {
    closing = closing || (async () => {
      if (page && process.env.SCREENSHOT) {
        await page.screenshot({ path: process.env.SCREENSHOT }).catch(() => {})
      }
      await browser.close().catch(() => {})
      server.close()
    })()
    return closing
  }
  for (const signal of ['SIGINT', 'SIGTERM']) {
    process.on(signal, () => close().then(() => process.exit(1)))
  }

  page = await browser.newPage()
  page.on('console', (msg) => process.stderr.write(`page console: ${msg.text()}\n`))
  page.on('pageerror', (err) => process.stderr.write(`page error: ${err.message}\n`))
  await page.exposeFunction('petrelEmit', emit)
  const { port } = server.address()
  await page.goto(`http://127.0.0.1:${port}/`)
  const mqttVersion = require('mqtt/package.json').version
  emit({ ev: 'ready', client: `MQTT.js ${mqttVersion} in Chromium ${browser.version()} (page http://127.0.0.1:${port}/)` })

  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
  for await (const line of lines) {
    if (line.trim() === '') {
      continue
    }
    const cmd = JSON.parse(line)
    try {
      const reply = await page.evaluate((c) => window.peer.run(c), cmd)
      emit({ ev: cmd.op, ...reply })
    } catch (err) {
      emit({ ev: 'error', op: cmd.op, error: String(err && err.message ? err.message : err) })
    }
  }
  await close()
  process.exit(0)
}

main().catch((err) => {
  process.stderr.write(`browser_peer: ${err && err.stack ? err.stack : err}\n`)
  process.exit(1)
})
