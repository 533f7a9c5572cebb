// node-postgres (pg + pg-cursor) against the gateway: typed parameters, an
// error with SQLSTATE, a bounded query, cursor streaming of an EMIT CHANGES
// query, and cancel. Usage: node drivers.js HOST PORT
const assert = require("assert");
const { Client } = require("pg");
const Cursor = require("pg-cursor");

const [host, port] = process.argv.slice(2);
const config = { host, port: Number(port), user: "alice", database: "velostream" };

async function main() {
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
  // Cancel: pg cancels a running query through a CancelRequest on a new
  // connection, sent once the engine runs the query (a cancel that lands
  // before it starts would be dropped).
  const pending = c.query("SELECT symbol FROM trades WHERE volume < 0 AND symbol <> 'node' EMIT CHANGES");
  await waitUntil(() => running("'node'"), "the query running");
  const canceller = new Client(config);
  canceller.cancel(c, c.activeQuery);
  await assert.rejects(pending, (e) => e.code === "57014");
  await waitUntil(async () => !(await running("'node'")), "the cancelled query gone", 2000);
  assert.strictEqual((await c.query("SELECT 2 AS two")).rows[0].two, 2);
  await c.end();
  console.log("node-postgres ok");
}

// Whether the engine runs a query whose SQL holds `fragment` (SHOW JOBS on
// a connection of its own).
async function running(fragment) {
  const w = new Client(config);
  await w.connect();
  try {
    const jobs = await w.query("SHOW JOBS");
    return jobs.rows.some((row) => row.sql.includes(fragment));
  } finally {
    await w.end();
  }
}

async function waitUntil(condition, what, ms = 10000) {
  const end = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > end) throw new Error(`not within ${ms} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
