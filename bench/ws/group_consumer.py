"""The baseline: a plain Channels consumer fed by one group_send per event (at-most-once)."""

from channels.generic.websocket import AsyncWebsocketConsumer

GROUP = "bench_fanout"


class BenchGroupConsumer(AsyncWebsocketConsumer):
    async def connect(self):
        await self.accept()
        await self.channel_layer.group_add(GROUP, self.channel_name)
        await self.send(text_data='{"type":"subscribed"}')

    async def disconnect(self, code):
        await self.channel_layer.group_discard(GROUP, self.channel_name)

    async def bench_message(self, event):
        await self.send(text_data=event["text"])
