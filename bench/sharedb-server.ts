/**
 * The ShareDB baseline server: ShareDB 7 with its in-memory database and pub/sub (the defaults of
 * `new ShareDB()`), served over WebSocket with `ws` and @teamwork/websocket-json-stream, as
 * ShareDB's own examples do. Run: node dist/bench/sharedb-server.js (prints {"port": N}).
 */
import { createServer } from 'node:http';
import WebSocketJSONStream from '@teamwork/websocket-json-stream';
import ShareDB from 'sharedb';
import { WebSocketServer } from 'ws';

const backend = new ShareDB();
const server = createServer();
const wss = new WebSocketServer({ server });
wss.on('connection', (ws) => {
  ws.on('error', () => {}); // a client that goes away mid-run must not crash the server
  backend.listen(new WebSocketJSONStream(ws));
});
server.listen(0, '127.0.0.1', () => {
  const addr = server.address();
  console.log(JSON.stringify({ port: typeof addr === 'object' && addr ? addr.port : 0 }));
});
process.once('SIGTERM', () => {
  for (const ws of wss.clients) ws.terminate();
  server.close(() => process.exit(0));
});
