// The chat page of `python -m common.chat serve`: no build step, no dependencies.
// The conversation lives here and goes with each question; the answer arrives as
// server-sent events over a fetch() stream, and Stop aborts that fetch, which closes the
// connection -- the server then closes its SageMaker stream.
"use strict";

const $ = (name) => document.querySelector(".llama2-chat-" + name);
const transcript = $("transcript"), input = $("input"), sendButton = $("send"),
  stopButton = $("stop"), clearButton = $("clear"), meter = $("meter"), notice = $("notice");
let messages = [];
let controller = null;

function line(kind, text) {
  const div = document.createElement("div");
  div.className = "llama2-chat-" + kind;
  div.textContent = text;  // text, never HTML
  transcript.appendChild(div);
  return div;
}

function busy(on) {
  sendButton.disabled = on;
  stopButton.disabled = !on;
}

function parseEvents(buffer, onEvent) {
  // Split complete SSE events off the buffer; return what is left.
  let end;
  while ((end = buffer.indexOf("\n\n")) >= 0) {
    const block = buffer.slice(0, end);
    buffer = buffer.slice(end + 2);
    let event = "message", data = "";
    for (const row of block.split("\n")) {
      if (row.startsWith("event: ")) event = row.slice(7);
      else if (row.startsWith("data: ")) data += row.slice(6);
    }
    if (data) onEvent(event, JSON.parse(data));
  }
  return buffer;
}

async function send() {
  const question = input.value.trim();
  if (!question || controller) return;
  notice.textContent = "";
  messages.push({role: "user", content: question});
  line("user", question);
  const answer = line("answer", "");
  const figures = line("figures", "waiting for the first token ...");
  input.value = "";
  busy(true);
  controller = new AbortController();
  const started = performance.now();
  let text = "", pieces = 0, first = null, done = null, failed = null;
  try {
    const response = await fetch("/api/chat", {
      method: "POST", headers: {"Content-Type": "application/json"},
      body: JSON.stringify({messages}), signal: controller.signal,
    });
    if (!response.ok) {
      const body = await response.json().catch(() => ({error: response.statusText}));
      throw new Error(body.error || response.statusText);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const {value, done: ended} = await reader.read();
      if (ended) break;
      buffer = parseEvents(buffer + decoder.decode(value, {stream: true}), (event, data) => {
        if (event === "meta") {
          meter.textContent = `Context: ${data.prompt_tokens} of ${data.prompt_limit} prompt ` +
            `tokens in the last request | ${data.dropped_turns} turns dropped | counted with ` +
            data.counted_with;
          if (data.notice) notice.textContent = data.notice;
        } else if (event === "token") {
          if (first === null) first = performance.now();
          text += data.text;
          pieces += 1;
          answer.textContent = text;
          const seconds = (performance.now() - first) / 1000;
          const rate = pieces > 1 && seconds > 0 ? ((pieces - 1) / seconds).toFixed(1) : "-";
          figures.textContent = `TTFT ${Math.round(first - started)} ms | ${pieces} tokens so ` +
            `far | ${rate} tokens/s`;
        } else if (event === "done") {
          done = data;
        } else if (event === "error") {
          failed = `${data.message} (error id ${data.error_id})`;
        }
      });
    }
    if (done) {
      figures.textContent = `TTFT ${done.ttft_ms} ms | ${done.tokens} tokens | ` +
        `${done.tokens_per_s ?? "-"} tokens/s`;
    } else if (failed) {
      figures.textContent = "the answer broke off";
      notice.textContent = failed;
    }
  } catch (error) {
    if (error.name === "AbortError") {
      figures.textContent = (figures.textContent.replace(" so far", "") + " | stopped");
    } else {
      notice.textContent = String(error.message || error);
      figures.textContent = "no answer";
    }
  } finally {
    controller = null;
    busy(false);
    if (text || done) {
      messages.push({role: "assistant", content: text});  // a stopped answer is kept
    } else {
      messages.pop();  // no answer: withdraw the question so that the roles alternate
    }
  }
}

sendButton.addEventListener("click", send);
input.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); send(); }
});
stopButton.addEventListener("click", () => { if (controller) controller.abort(); });
clearButton.addEventListener("click", () => {
  if (controller) controller.abort();
  messages = [];
  transcript.textContent = "";
  notice.textContent = "";
  meter.textContent = "Context: 0 prompt tokens | 0 turns dropped";
});
