"""WebSocket feed at /ws/knowledge/ (protocol: docs/realtime.md, DESIGN.md section 7).

Placeholder until the real-time issue lands: authenticates, then refuses with 4503.
"""

from channels.generic.websocket import AsyncJsonWebsocketConsumer


class KnowledgeConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self):
        await self.close(code=4503)
