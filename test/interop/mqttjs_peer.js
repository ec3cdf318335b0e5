// An MQTT client built on MQTT.js in Node, driven line by line: one JSON
// command a line on standard input, one JSON event a line on standard
// output (peer_test.go describes the protocol). The URL chooses the
// transport: mqtt:// for TCP, ws:// for WebSocket.
'use strict'

const readline = require('node:readline')
const mqtt = require('mqtt')
const makePeer = require('./peer_core.js')

function emit (event) {
  process.stdout.write(JSON.stringify(event) + '\n')
}

async function main () {
  const peer = makePeer(mqtt, emit)
  const version = require('mqtt/package.json').version
  emit({ ev: 'ready', client: `MQTT.js ${version} (Node ${process.version})` })
  const lines = readline.createInterface({ input: process.stdin, crlfDelay: Infinity })
  // One command at a time, in order: each reply follows its command.
  for await (const line of lines) {
    if (line.trim() === '') {
      continue
    }
    const cmd = JSON.parse(line)
    try {
      const reply = await peer.run(cmd)
      emit({ ev: cmd.op, ...reply })
    } catch (err) {
      emit({ ev: 'error', op: cmd.op, error: String(err && err.message ? err.message : err) })
    }
  }
  process.exit(0)
}

main()
