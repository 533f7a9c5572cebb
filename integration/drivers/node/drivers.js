// node-postgres (pg + pg-cursor) against the gateway: typed parameters, an
// error with SQLSTATE, a bounded query, cursor streaming of an EMIT CHANGES
// query, and cancel. Usage: node drivers.js HOST PORT
const assert = require("assert");
const { Client } = require("pg");
const Cursor = require("pg-cursor");

async function main() {
  const [host, port] = process.argv.slice(2);
  const config = { host, port: Number(port), user: "alice", database: "velostream" };
  const c = new Client(config);
  await c.connect();
  assert.strictEqual((await c.query("SELECT 1 AS one")).rows[0].one, 1);
  const r = await c.query(
    "SELECT symbol, price, volume FROM trades WHERE volume > $1 AND symbol <> $2 LIMIT 3", [0, "nope"]);
  assert.strictEqual(r.rows.length, 3);
  for (const row of r.rows) {
    assert.match(row.price, /^\d+\.\d\d$/);
    assert.ok(Number(row.volume) > 0);
  }
  await assert.rejects(c.query("SELECT * FROM nope"), (e) => e.code === "42P01");
  const cursor = c.query(new Cursor("SELECT symbol, price FROM trades EMIT CHANGES"));
  let seen = 0;
  while (seen < 12) {
    const rows = await cursor.read(5);
    seen += rows.length;
  }
  await cursor.close();
  // Cancel: pg cancels a running query through a CancelRequest on a new connection.
  const pending = c.query("SELECT symbol FROM trades WHERE volume < 0 EMIT CHANGES");
  setTimeout(() => {
    const canceller = new Client(config);
    canceller.cancel(c, c.activeQuery);
  }, 500);
  await assert.rejects(pending, (e) => e.code === "57014");
  assert.strictEqual((await c.query("SELECT 2 AS two")).rows[0].two, 2);
  await c.end();
  console.log("node-postgres ok");
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
