// A pooled node-pg application that starts, queries and shuts down, many
// times over. Exits non-zero if any client raises an error, including the
// unhandled 'error' event an idle client emits when the server says
// anything after pool.end() sent its Terminate.
const { Pool } = require('pg');

const [port, rounds] = [Number(process.argv[2]), Number(process.argv[3] || 20)];
let errors = 0;
process.on('uncaughtException', (e) => {
  errors += 1;
  console.error('uncaught:', e.message);
});

async function round() {
  const pool = new Pool({ host: '127.0.0.1', port, user: 'postgres', database: 'postgres', max: 4 });
  pool.on('error', (e) => {
    errors += 1;
    console.error('pool error:', e.message);
  });
  await Promise.all([1, 2, 3, 4].map(() => pool.query('SELECT pg_sleep(0.01)')));
  await pool.end();
}

(async () => {
  for (let i = 0; i < rounds; i++) await round();
  // Late errors arrive after end() resolves.
  await new Promise((r) => setTimeout(r, 200));
  console.log(`rounds=${rounds} errors=${errors}`);
  process.exit(errors === 0 ? 0 : 1);
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
