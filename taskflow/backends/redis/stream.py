"""Several calls of one script on one connection, each sent as soon as it is encoded.

Redis runs the commands of one connection in the order they arrive, so it runs the first call
while this process still encodes the next: a large save costs about the server's own time,
whatever the chunk size, where chunks sent at once on connections of their own cost a third
more (``python -m bench.flush``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError

Part = TypeVar("Part")


async def call_streamed(
    client: Redis,
    script: AsyncScript,
    keys: list[str],
    parts: Sequence[Part],
    encode: Callable[[Part], list[Any]],
) -> list[Any]:
    """Run ``script`` once per part, in order, and return the replies.

    ``encode`` turns a part into the script's ARGV; it runs just before the part is sent, so
    encoding overlaps Redis's work. Connection errors and timeouts are retried as the client's
    other commands are (every part again: the calls must be safe to repeat). An error reply
    is raised after every reply has been read, so the connection stays usable.
    """
    pool = client.connection_pool
    connection = await pool.get_connection()  # type: ignore[no-untyped-call]

    async def send_all() -> list[Any]:
        for part in parts:
            await connection.send_command("EVALSHA", script.sha, len(keys), *keys, *encode(part))
        replies: list[Any] = []
        for _ in parts:
            try:
                replies.append(await connection.read_response())
            except ResponseError as error:  # an error reply: the next ones are still to be read
                replies.append(error)
        return replies

    try:
        replies: list[Any] = await connection.retry.call_with_retry(
            send_all, lambda _error: connection.disconnect()
        )
        if any(isinstance(reply, NoScriptError) for reply in replies):
            # Redis lost its scripts (a restart, SCRIPT FLUSH): the calls it rejected did
            # nothing. The whole stream goes again, in order; the calls are safe to repeat.
            await client.script_load(script.script)
            replies = await send_all()
    except BaseException:
        # Replies may be left unread (an encoding error, a cancellation): the connection must
        # not serve its next caller those replies.
        await connection.disconnect(nowait=True)
        raise
    finally:
        await pool.release(connection)
    for reply in replies:
        if isinstance(reply, ResponseError):
            raise reply
    return replies
