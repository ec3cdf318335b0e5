// The commands of an interop peer built on MQTT.js, shared by Node
// (mqttjs_peer.js) and the browser (page.html, driven by browser_peer.js).
// peer_test.go describes the protocol: run(cmd) answers each command with
// the fields of its reply; received messages go to emit as they arrive.
(function (root, factory) {
  if (typeof module === 'object' && module.exports) {
    module.exports = factory
  } else {
    root.makePeer = factory
  }
})(this, function makePeer (mqtt, emit) {
  const TIMEOUT = 15000
  let client = null

  // within rejects if promise has not settled in TIMEOUT.
  function within (what, promise) {
    let timer
    const late = new Promise((resolve, reject) => {
      timer = setTimeout(() => reject(new Error(what + ': no answer within ' + TIMEOUT + 'ms')), TIMEOUT)
    })
    return Promise.race([promise, late]).finally(() => clearTimeout(timer))
  }

  function connected () {
    if (client === null) {
      throw new Error('not connected')
    }
    return client
  }

  const ops = {
    connect (cmd) {
      const opts = {
        clientId: cmd.id,
        protocolVersion: cmd.version || 4,
        clean: cmd.clean !== false,
        keepalive: 30,
        connectTimeout: TIMEOUT,
        reconnectPeriod: 0 // a lost connection stays lost: the test decides
      }
      if (opts.protocolVersion === 5) {
        opts.properties = { sessionExpiryInterval: cmd.expiry || 0 }
      }
      if (cmd.will) {
        opts.will = {
          topic: cmd.will.topic,
          payload: cmd.will.payload || '',
          qos: cmd.will.qos || 0,
          retain: !!cmd.will.retain
        }
      }
      const c = mqtt.connect(cmd.url, opts)
      c.on('message', (topic, payload, packet) => {
        emit({ ev: 'message', topic, payload: payload.toString(), qos: packet.qos, retain: !!packet.retain })
      })
      return within('CONNACK', new Promise((resolve, reject) => {
        c.once('connect', (connack) => {
          client = c
          resolve({ session_present: !!connack.sessionPresent })
        })
        c.on('error', (err) => {
          // Before CONNACK this settles the command; after, the next
          // command finds out, and an unhandled 'error' must not throw.
          c.end(true)
          reject(err)
        })
        c.once('close', () => reject(new Error('connection closed before CONNACK')))
      }))
    },

    subscribe (cmd) {
      const c = connected()
      return within('SUBACK', new Promise((resolve, reject) => {
        c.subscribe(cmd.topic, { qos: cmd.qos || 0 }, (err, granted) => {
          if (err) {
            reject(err)
            return
          }
          resolve({ granted: granted.map((g) => g.qos) })
        })
      }))
    },

    // Resolves once the QoS flow is complete: PUBACK for 1, PUBCOMP for 2.
    publish (cmd) {
      const c = connected()
      return within('publish', new Promise((resolve, reject) => {
        c.publish(cmd.topic, cmd.payload || '', { qos: cmd.qos || 0, retain: !!cmd.retain }, (err) => {
          if (err) {
            reject(err)
            return
          }
          resolve({})
        })
      }))
    },

    disconnect () {
      const c = connected()
      client = null
      return within('disconnect', new Promise((resolve) => c.end(false, {}, () => resolve({}))))
    },

    // Closes the connection without DISCONNECT, like a crash.
    drop () {
      const c = connected()
      client = null
      return within('drop', new Promise((resolve) => c.end(true, {}, () => resolve({}))))
    }
  }

  return {
    run (cmd) {
      const op = ops[cmd.op]
      if (!Object.prototype.hasOwnProperty.call(ops, cmd.op)) {
        return Promise.reject(new Error('unknown op ' + cmd.op))
      }
      return Promise.resolve().then(() => op(cmd))
    }
  }
})
