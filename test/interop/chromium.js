// Headless Chromium for the browser peers (browser_peer.js,
// dashboard_driver.js), launched the one way both need.
//
// Environment: CHROMIUM is the browser (default /usr/bin/chromium).
'use strict'

const { chromium } = require('playwright-core')

// Flags for a closed network: no background fetches, no updates, no sync.
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync'
]

// launch starts the browser.
function launch () {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: CHROMIUM_ARGS
  })
}

module.exports = { launch }
