// SecureVault console: the little the pages cannot do on their own. Every
// page works without this script; it only streams a generation's answer as
// it is written and keeps an email's status current while it is in flight.
// Loaded from the data plane itself (the CSP allows nothing else).
"use strict";

(function () {
  // --- Try a prompt: stream the answer from the API's own route. ---------
  var form = document.getElementById("prompt-form");
  if (form && window.fetch && window.TextDecoder) {
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      streamPrompt(form);
    });
  }

  function streamPrompt(form) {
    var answer = document.getElementById("answer");
    var problem = document.getElementById("answer-error");
    var button = form.querySelector("button[type=submit]");
    var prompt = form.elements.prompt.value;
    var maxTokens = parseInt(form.elements.max_tokens.value, 10);
    var body = { prompt: prompt, stream: true };
    if (maxTokens > 0) body.max_tokens = maxTokens;

    answer.textContent = "";
    answer.setAttribute("aria-busy", "true");
    problem.hidden = true;
    button.disabled = true;

    function fail(message) {
      problem.textContent = message;
      problem.hidden = false;
    }
    function finish() {
      answer.removeAttribute("aria-busy");
      button.disabled = false;
    }

    fetch(form.getAttribute("data-stream"), {
      method: "POST",
      credentials: "same-origin",
      // The API refuses a call by the session cookie that does not show it
      // comes from our own pages: the browser's Origin does, and the
      // session's CSRF token covers a browser that sends no Origin.
      headers: {
        "Content-Type": "application/json",
        "Accept": "text/event-stream",
        "X-CSRF-Token": form.elements.csrf ? form.elements.csrf.value : ""
      },
      body: JSON.stringify(body)
    }).then(function (res) {
      if (!res.ok) {
        return res.json().then(function (e) {
          fail((e && e.error && e.error.message) || ("the server answered " + res.status));
        }, function () { fail("the server answered " + res.status); });
      }
      return readEvents(res.body.getReader(), function (name, data) {
        if (name === "token") {
          answer.textContent += data.text || "";
        } else if (name === "error") {
          fail((data.error && data.error.message) || "the generation failed");
        }
      });
    }).catch(function (e) {
      fail("the connection failed: " + e.message);
    }).then(finish);
  }

  // Server-sent events: blocks separated by a blank line, with
  // `event:` and `data:` fields; data is JSON here.
  function readEvents(reader, onEvent) {
    var decoder = new TextDecoder();
    var buffer = "";
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) return;
        buffer += decoder.decode(chunk.value, { stream: true }).replace(/\r\n/g, "\n");
        var end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          dispatch(buffer.slice(0, end), onEvent);
          buffer = buffer.slice(end + 2);
        }
        return pump();
      });
    }
    return pump();
  }

  function dispatch(block, onEvent) {
    var name = "message";
    var data = [];
    block.split("\n").forEach(function (line) {
      if (line.indexOf("event:") === 0) name = line.slice(6).trim();
      else if (line.indexOf("data:") === 0) data.push(line.slice(5).replace(/^ /, ""));
    });
    if (!data.length) return;
    try {
      onEvent(name, JSON.parse(data.join("\n")));
    } catch (e) {
      // Not JSON (a keep-alive comment, say): nothing to show.
    }
  }

  // --- An email in flight: refresh its state until it is final. ---------
  var live = document.getElementById("email-state");
  if (live && live.hasAttribute("data-refresh") && window.fetch && window.DOMParser) {
    var every = parseInt(live.getAttribute("data-refresh"), 10) || 2000;
    var refresh = function () {
      fetch(window.location.href, { credentials: "same-origin", headers: { "Accept": "text/html" } })
        .then(function (res) {
          // Signed out meanwhile (redirected to the sign-in page): stop.
          if (!res.ok || res.redirected) return null;
          return res.text();
        })
        .then(function (html) {
          if (html === null) return;
          var next = new DOMParser().parseFromString(html, "text/html").getElementById("email-state");
          if (!next) return;
          live.innerHTML = next.innerHTML;
          if (next.hasAttribute("data-refresh")) window.setTimeout(refresh, every);
          else live.removeAttribute("data-refresh");
        })
        .catch(function () { window.setTimeout(refresh, every * 2); });
    };
    window.setTimeout(refresh, every);
  }
})();
