// The conformance fixture's resumability parts (tests/conformance/fixture_server.mjs, http mode):
// its in-memory event store, and the polling behaviour of `--close-get-stream`.
//
// With `--close-get-stream`, before a scenario tool asks its question on the standalone GET stream,
// the server sends a log notification there (an event with an id, after a `retry:` hint), closes the
// stream as the 2025-11-25 polling pattern allows (`closeStandaloneSSEStream`), and only then asks.
// The SDK stores the question in the event store, since no GET stream is open: a client that
// reconnects with `Last-Event-ID` gets it replayed; one that reconnects without it never sees it.

/** Milliseconds the GET stream's `retry:` hint asks a client to wait before it reconnects. */
export const RETRY_HINT_MS = 200;

/** The smallest event store the SDK's resumability needs: every event of every stream, in order. */
export class MemoryEventStore {
  constructor() {
    this.events = [];
  }
  async storeEvent(streamId, message) {
    const eventId = `${streamId}_${this.events.length}`;
    this.events.push({ eventId, streamId, message });
    return eventId;
  }
  async getStreamIdForEventId(eventId) {
    return this.events.find((e) => e.eventId === eventId)?.streamId;
  }
  async replayEventsAfter(lastEventId, { send }) {
    const i = this.events.findIndex((e) => e.eventId === lastEventId);
    if (i < 0) return '';
    const streamId = this.events[i].streamId;
    for (const e of this.events.slice(i + 1)) {
      if (e.streamId === streamId && Object.keys(e.message).length > 0) await send(e.eventId, e.message);
    }
    return streamId;
  }
}

/**
 * Sends a notification with no related request (so on the standalone GET stream, with an event id)
 * and closes that stream. The SDK writes no `retry:` on a GET stream: `withRetryHint` adds it.
 */
export async function closesGetStreams(server, extra) {
  await server.notification({
    method: 'notifications/message',
    params: { level: 'info', logger: 'fixture', data: 'closing the GET stream; resume it with Last-Event-ID' },
  });
  if (!extra.closeStandaloneSSEStream) throw new Error('closeStandaloneSSEStream needs an event store');
  extra.closeStandaloneSSEStream();
}

/** Writes a `retry:` field first on a GET's SSE response (node `http.ServerResponse`). */
export function withRetryHint(res) {
  const write = res.write.bind(res);
  let first = true;
  res.write = (chunk, ...rest) => {
    if (first && res.statusCode === 200) {
      first = false;
      write(`retry: ${RETRY_HINT_MS}\n\n`);
    }
    return write(chunk, ...rest);
  };
}
