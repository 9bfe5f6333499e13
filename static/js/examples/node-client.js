// Follow the Knowledge Exchange live feed from Node (docs/realtime-client.md).
//   npm install knowledge-exchange-socket ws
//   KX_URL=http://127.0.0.1:8000 KX_TOKEN=<worker token> node node-client.js
// KX_POLL_ONLY=1 uses REST long polling only (what you get without `ws`).
const KnowledgeSocket = require('knowledge-exchange-socket');
const WebSocket = require('ws'); // Node 20 has no global WebSocket

const base = process.env.KX_URL; // absolute: Node has no page to derive URLs from
const transport = process.env.KX_POLL_ONLY
  ? { WebSocketImpl: null, pollUrl: base + '/api/knowledge/events', pollWait: 5 }
  : { WebSocketImpl: WebSocket, baseUrl: base };

const socket = new KnowledgeSocket({
  ...transport,
  token: process.env.KX_TOKEN, // a worker token
  filters: { events: ['knowledge_broadcast'] },
  onStatus: (status, info) => console.log('status', status, info.mode),
  onEvent: (event) => console.log('event', event.seq, event.event, event.data.item.knowledge_type),
  onError: (error) => console.log('error', error.type, error.message),
});
socket.start();
process.on('SIGTERM', () => socket.stop());
