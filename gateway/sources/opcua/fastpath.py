"""Route an asyncua client's data-change PublishResponses around asyncua's generic decoding and dispatch.

asyncua's publish loop (``UaSession._publish_loop``) sends PublishRequests, decodes each response into
dataclasses with its reflection-driven deserialisers, and hands it to the subscription, which builds a
``DataChangeNotif`` and a ``DataChangeEvent`` per value and queues them. Profiled at 10,000 changes/s
that decoding and dispatch is about two thirds of the gateway's CPU (``docs/performance.md``).

:class:`FastPublishRoute` replaces the session's ``publish`` step only: the request is built and sent
exactly as asyncua does, the response bytes go through :func:`.fastdecode.decode_publish`,
and a response of scalar data changes for a routed subscription reaches the gateway's handler as one
list of ``(handle, value, status, source_ns, server_ns)`` tuples. Everything else (events, status
changes, keep-alives of subscriptions not routed, anything the fast decoder declines) is decoded by
asyncua and dispatched by asyncua as before. Acknowledgements, the subscription's sequence-number and
last-publish bookkeeping stay asyncua's.

This reaches into two attributes of asyncua's session (``publish`` and ``_subscription_callbacks``);
asyncua is pinned, and every OPC UA test of the gateway runs through this route.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from asyncua import ua
from asyncua.client.client import Client
from asyncua.common.subscription import Subscription
from asyncua.ua.ua_binary import struct_from_binary
from asyncua.ua.uaerrors import UaStructParsingError

from .fastdecode import Change, FastPublish, decode_publish
from .resolve import to_ns

__all__ = ["ChangeHandler", "FastPublishRoute", "change_of"]

log = logging.getLogger(__name__)

ChangeHandler = Callable[[list[Change]], None]


class _Message:
    """What the publish loop reads of a NotificationMessage."""

    __slots__ = ("NotificationData", "SequenceNumber")

    def __init__(self, fast: FastPublish) -> None:
        # Only its truth is read (a message with notifications is acknowledged).
        self.NotificationData: tuple[None, ...] = (None,) * fast.notifications
        self.SequenceNumber = fast.sequence_number


class _Result:
    """What the publish loop reads of a PublishResult; carries the decoded changes to the route."""

    __slots__ = ("NotificationMessage", "SubscriptionId", "fast")

    def __init__(self, fast: FastPublish) -> None:
        self.SubscriptionId = fast.subscription_id
        self.NotificationMessage = _Message(fast)
        self.fast = fast


class _Response:
    __slots__ = ("Parameters",)

    def __init__(self, fast: FastPublish) -> None:
        self.Parameters = _Result(fast)


def change_of(item: ua.MonitoredItemNotification) -> Change:
    """The change tuple of a notification decoded by asyncua."""
    dv = item.Value
    value = dv.Value.Value if dv.Value is not None else None
    status = dv.StatusCode.value if dv.StatusCode is not None else 0
    return (item.ClientHandle, value, status, to_ns(dv.SourceTimestamp), to_ns(dv.ServerTimestamp))


class FastPublishRoute:
    """Installed on one client before its subscriptions are created; one route per routed subscription."""

    def __init__(self, client: Client, counts: Counter[str]) -> None:
        self._session: Any = client.uaclient.session
        self._routed: set[int] = set()
        #: PublishResponses decoded by the fast path ("fast") and by asyncua ("generic")
        self.counts = counts
        self._session.publish = self._publish  # type: ignore[method-assign]

    def route(self, sub: Subscription, handler: ChangeHandler) -> None:
        """Send the scalar data changes of ``sub`` to ``handler``; the rest of ``sub`` stays asyncua's."""
        sid = sub.subscription_id
        if sid is None:
            raise ValueError("route a subscription after it has been created")
        callbacks: dict[int, Callable[[Any], Awaitable[None] | None]] = self._session._subscription_callbacks
        generic = callbacks[sid]

        def dispatch(params: Any) -> Awaitable[None] | None:
            if isinstance(params, _Result):
                sub.last_publish_at = time.monotonic()
                sub.last_sequence_number = params.fast.sequence_number
                if params.fast.changes:
                    handler(params.fast.changes)
                return None
            # Decoded by asyncua: its data changes still take the same synchronous way (so a node's
            # values stay in order across the two paths); events and status changes go to asyncua.
            data = params.NotificationMessage.NotificationData or []
            changes = [
                change_of(item) for n in data if isinstance(n, ua.DataChangeNotification) for item in n.MonitoredItems
            ]
            if not changes:
                return generic(params)
            handler(changes)
            msg = params.NotificationMessage
            rest = [n for n in data if not isinstance(n, ua.DataChangeNotification)]
            return generic(
                ua.PublishResult(
                    SubscriptionId=params.SubscriptionId,
                    AvailableSequenceNumbers=params.AvailableSequenceNumbers,
                    MoreNotifications=params.MoreNotifications,
                    NotificationMessage=ua.NotificationMessage(
                        SequenceNumber=msg.SequenceNumber, PublishTime=msg.PublishTime, NotificationData=rest
                    ),
                    Results=params.Results,
                    DiagnosticInfos=params.DiagnosticInfos,
                )
            )

        callbacks[sid] = dispatch
        self._routed.add(sid)

    async def _publish(self, acks: list[ua.SubscriptionAcknowledgement]) -> Any:
        request = ua.PublishRequest()
        request.Parameters.SubscriptionAcknowledgements = acks if acks else []
        data = await self._session._send_request(request, timeout=0)
        if self._routed:
            fast = decode_publish(bytes(data))
            if fast is not None and fast.subscription_id in self._routed:
                self.counts["fast"] += 1
                return _Response(fast)
        self.counts["generic"] += 1
        try:
            return struct_from_binary(ua.PublishResponse, data)
        except Exception as ex:
            log.exception("could not parse a PublishResponse from the server")
            raise UaStructParsingError from ex
