// Real Minecraft clients for the gateway's end-to-end tests: `minecraft-protocol`'s status
// ping and a `mineflayer` bot, both offline mode, Minecraft 1.8.9. The socket goes to
// 127.0.0.1:<port> (the gateway) while the handshake names <host>, as a player's DNS would.
//
//   node peers.js ping <port> <host>                 → {"motd", "online", "max", "protocol"}
//   node peers.js join <port> <host> <name> <stay_ms> → {"result": "spawned" | "kicked" | "error", ...}
'use strict'
const net = require('net')
const mc = require('minecraft-protocol')
const mineflayer = require('mineflayer')

const [cmd, port, host, name, stay] = process.argv.slice(2)
const out = (v) => { process.stdout.write(JSON.stringify(v) + '\n'); process.exit(0) }
const socket = () => net.connect(Number(port), '127.0.0.1')
setTimeout(() => out({ result: 'error', message: 'no answer within 60 s' }), 60000)

if (cmd === 'ping') {
  mc.ping({ host, port: Number(port), version: '1.8.9', stream: socket() })
    .then((r) => out({ motd: typeof r.description === 'string' ? r.description : r.description.text, online: r.players.online, max: r.players.max, protocol: r.version.protocol }))
    .catch((e) => out({ result: 'error', message: e.message }))
} else if (cmd === 'join') {
  const bot = mineflayer.createBot({ host, port: Number(port), username: name, version: '1.8.9', auth: 'offline', stream: socket(), hideErrors: true })
  bot.on('spawn', () => setTimeout(() => { const y = bot.entity.position.y; bot.quit(); out({ result: 'spawned', y }) }, Number(stay || 0)))
  bot.on('kicked', (reason) => {
    let text = reason
    try { const j = JSON.parse(reason); text = j.text ?? j } catch (_) {}
    out({ result: 'kicked', reason: text })
  })
  bot.on('error', (e) => out({ result: 'error', message: e.message }))
  bot.on('end', (why) => out({ result: 'ended', reason: String(why) }))
} else {
  out({ result: 'error', message: `unknown command ${cmd}` })
}
