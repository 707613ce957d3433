// bramble_http.h: the HTTP/1.0 subset both bramble boards speak (docs/bridges.md).
// One request per connection; parameters in the query string only; the shared secret in the
// X-Bramble-Secret header; answers are JSON with a Content-Length. The same request text
// works over the USB serial port. src/bramble/bridge/protocol.py holds the same constants
// (a test compares them) and src/bramble/sim/boards.py answers exactly like this code.
#ifndef BRAMBLE_HTTP_H
#define BRAMBLE_HTTP_H

#include <Arduino.h>
#include <string.h>

#define BRAMBLE_MAX_LINE 255
#define BRAMBLE_MAX_HEADERS 16
#define BRAMBLE_READ_TIMEOUT_MS 2000
#define BRAMBLE_AUTH_FAIL_DELAY_MS 250
// Lines read after the header limit before giving up on a client that never stops.
#define BRAMBLE_MAX_EXTRA_LINES 64

struct BrambleRequest {
  char method[8];
  char path[24];
  char query[BRAMBLE_MAX_LINE + 1];
  bool authorized;
  int status;  // 0: parsed; else the error status to answer
};

// One LF-terminated line (CR dropped) into buf. Returns its length, -1 on timeout, -2 when it
// was longer than max (the rest is read and dropped).
static int brambleReadLine(Stream &io, char *buf, int max) {
  unsigned long start = millis();
  int n = 0;
  bool overflow = false;
  while (millis() - start < BRAMBLE_READ_TIMEOUT_MS) {
    if (!io.available()) {
      continue;
    }
    char c = io.read();
    if (c == '\r') {
      continue;
    }
    if (c == '\n') {
      buf[n] = 0;
      return overflow ? -2 : n;
    }
    if (n < max) {
      buf[n++] = c;
    } else {
      overflow = true;
    }
  }
  buf[n] = 0;
  return -1;
}

// Constant-time comparison with the board's secret.
static bool brambleSecretOk(const char *given) {
  const char *want = BRAMBLE_SECRET;
  size_t a = strlen(given);
  size_t b = strlen(want);
  uint8_t diff = a != b;
  for (size_t i = 0; i < b; i++) {
    diff |= (uint8_t)(want[i] ^ (i < a ? given[i] : 0));
  }
  return diff == 0;
}

static void brambleParse(Stream &io, BrambleRequest &req) {
  char line[BRAMBLE_MAX_LINE + 1];
  req.method[0] = 0;
  req.path[0] = 0;
  req.query[0] = 0;
  req.authorized = false;
  req.status = 0;
  int n = brambleReadLine(io, line, BRAMBLE_MAX_LINE);
  if (n == -1) {
    req.status = 408;
    return;
  }
  if (n == -2) {
    req.status = 414;
  } else {
    char *sp1 = strchr(line, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;
    if (!sp1 || !sp2 || (size_t)(sp1 - line) >= sizeof(req.method)) {
      req.status = 400;
    } else {
      *sp1 = 0;
      *sp2 = 0;
      strcpy(req.method, line);
      char *target = sp1 + 1;
      char *q = strchr(target, '?');
      if (q) {
        *q = 0;
        strcpy(req.query, q + 1);
      }
      if (strlen(target) >= sizeof(req.path)) {
        req.status = 404;
      } else {
        strcpy(req.path, target);
      }
    }
  }
  for (int count = 0; count < BRAMBLE_MAX_HEADERS + BRAMBLE_MAX_EXTRA_LINES; count++) {
    n = brambleReadLine(io, line, BRAMBLE_MAX_LINE);
    if (n == 0) {
      return;
    }
    if (n == -1) {
      req.status = 408;
      return;
    }
    if (n == -2 || count >= BRAMBLE_MAX_HEADERS) {
      if (!req.status) {
        req.status = 431;
      }
      continue;
    }
    if (strncasecmp(line, "X-Bramble-Secret:", 17) == 0) {
      char *value = line + 17;
      while (*value == ' ') {
        value++;
      }
      req.authorized = brambleSecretOk(value);
    }
  }
  if (!req.status) {
    req.status = 431;
  }
}

// The value of key in the query (first occurrence, no decoding) into out.
// 0: found; 1: absent; 2: longer than out.
static int brambleParam(const char *query, const char *key, char *out, size_t outSize) {
  size_t keyLen = strlen(key);
  const char *p = query;
  while (*p) {
    const char *end = strchr(p, '&');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    if (len > keyLen && strncmp(p, key, keyLen) == 0 && p[keyLen] == '=') {
      size_t valueLen = len - keyLen - 1;
      if (valueLen >= outSize) {
        return 2;
      }
      memcpy(out, p + keyLen + 1, valueLen);
      out[valueLen] = 0;
      return 0;
    }
    p += len;
    if (*p == '&') {
      p++;
    }
  }
  return 1;
}

// A decimal integer parameter within [lo, hi]. 0: ok; 1: absent; 2: not a number in range.
static int brambleIntParam(const char *query, const char *key, long lo, long hi, long &value) {
  char text[12];
  int found = brambleParam(query, key, text, sizeof(text));
  if (found != 0) {
    return found;
  }
  if (!text[0]) {
    return 2;
  }
  long v = 0;
  for (const char *c = text; *c; c++) {
    if (*c < '0' || *c > '9' || v > 100000000L) {
      return 2;
    }
    v = v * 10 + (*c - '0');
  }
  if (v < lo || v > hi) {
    return 2;
  }
  value = v;
  return 0;
}

static const char *brambleReason(int status) {
  switch (status) {
    case 200: return "OK";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    default: return "Error";
  }
}

static void brambleReply(Stream &io, int status, const char *json) {
  io.print(F("HTTP/1.0 "));
  io.print(status);
  io.print(' ');
  io.print(brambleReason(status));
  io.print(F("\r\nContent-Type: application/json\r\nContent-Length: "));
  io.print(strlen(json));
  io.print(F("\r\nConnection: close\r\n\r\n"));
  io.print(json);
}

static void brambleError(Stream &io, int status, const char *message) {
  char json[128];
  snprintf(json, sizeof(json), "{\"error\":\"%s\"}", message);
  brambleReply(io, status, json);
}

// Parse a request and answer the errors every route shares. True when the sketch's own
// routes should handle it: parsed, authorised, GET or POST.
static bool brambleAccept(Stream &io, BrambleRequest &req) {
  brambleParse(io, req);
  if (req.status == 408) {
    brambleError(io, 408, "request timeout");
    return false;
  }
  if (req.status == 414) {
    brambleError(io, 414, "request line too long");
    return false;
  }
  if (req.status == 431) {
    brambleError(io, 431, "too many or too long headers");
    return false;
  }
  if (req.status == 400) {
    brambleError(io, 400, "malformed request line");
    return false;
  }
  if (!req.authorized) {
    delay(BRAMBLE_AUTH_FAIL_DELAY_MS);
    brambleError(io, 401, "missing or wrong secret");
    return false;
  }
  if (req.status == 404) {
    brambleError(io, 404, "no such path");
    return false;
  }
  if (strcmp(req.method, "GET") != 0 && strcmp(req.method, "POST") != 0) {
    brambleError(io, 405, "GET or POST only");
    return false;
  }
  return true;
}

// Serve one network client if one is waiting, and the serial port if a request arrives there.
typedef void (*BrambleHandler)(Stream &io);

static void brambleServe(EthernetServer &server, BrambleHandler handle) {
  EthernetClient client = server.available();
  if (client) {
    handle(client);
    client.flush();
    delay(1);
    client.stop();
  }
  if (Serial.available()) {
    handle(Serial);
  }
}

#endif
