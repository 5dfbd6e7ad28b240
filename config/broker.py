"""The embedded broker: kombu's filesystem transport, with messages written atomically.

kombu's own `_put` creates the message file and then writes it, so a consumer polling the folder
can pick up an empty file and crash the worker (JSONDecodeError). Here a message is written under a
temporary name that consumers ignore and renamed into place once complete.
"""

from __future__ import annotations

import os
import uuid
from time import monotonic

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    def _put(self, queue, payload, **kwargs) -> None:
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + ".part"  # "<...>.<queue>.msg.part": not a message for any queue
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add message {name!r} to {self.data_folder_out!r}: {exc}") from exc


class FilesystemTransport(filesystem.Transport):
    Channel = Channel
