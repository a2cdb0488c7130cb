"""From the notebook to an app: a small async web relay of the endpoint's stream.

``python -m common.chat serve --endpoint NAME`` serves one static chat page and relays each
answer from SageMaker to the browser as server-sent events, on one asyncio event loop
(aiohttp for HTTP, aiobotocore through :func:`common.ainvoke_stream` for SageMaker): many
readers at once without a thread each. See :mod:`common.chat.server` for what it guards.
"""

from common.chat.server import ChatRelay, RelaySettings, build_app

__all__ = ["ChatRelay", "RelaySettings", "build_app"]
