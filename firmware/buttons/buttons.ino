// bramble buttons board: two solenoids press the head server's power and reset buttons.
// An Arduino Mega with an Ethernet shield (W5100/W5500). The bridges role renders
// bramble_settings.h (address, MAC, secret: unique per board) and copies bramble_http.h beside
// this file. API (docs/bridges.md), every request with the X-Bramble-Secret header:
//   GET  /state                         both solenoids: idle, pressed or stuck
//   POST /press?button=power|reset&ms=N press for N ms, BRAMBLE_MIN_PRESS_MS..BRAMBLE_MAX_PRESS_MS
//   POST /hold?button=power             hold power for BRAMBLE_HOLD_MS (forced power-off)
//   POST /release                       let go of both at once
// The board boots idle and presses nothing until asked. A press is non-blocking: the board
// keeps answering while a solenoid is out. With BRAMBLE_SENSE, a plunger switch per solenoid
// (LOW = out) tells when a solenoid stays out after its release: "stuck", and further presses
// of it are refused with 503.
#include <SPI.h>
#include <Ethernet.h>

#include "bramble_settings.h"
#include "bramble_http.h"

#define BRAMBLE_MIN_PRESS_MS 50
#define BRAMBLE_MAX_PRESS_MS 2000
#define BRAMBLE_HOLD_MS 6000
#define BRAMBLE_STUCK_CHECK_MS 200

struct Solenoid {
  const char *name;
  uint8_t drivePin;
  uint8_t sensePin;
  bool active;
  bool stuck;
  unsigned long since;
  unsigned long duration;
  unsigned long releasedAt;
  unsigned long presses;
};

static Solenoid solenoids[2] = {
    {"power", BRAMBLE_PIN_POWER, BRAMBLE_PIN_POWER_SENSE, false, false, 0, 0, 0, 0},
    {"reset", BRAMBLE_PIN_RESET, BRAMBLE_PIN_RESET_SENSE, false, false, 0, 0, 0, 0},
};

static byte mac[] = BRAMBLE_MAC;
EthernetServer server(BRAMBLE_PORT);

static Solenoid *findSolenoid(const char *name) {
  for (uint8_t i = 0; i < 2; i++) {
    if (strcmp(solenoids[i].name, name) == 0) {
      return &solenoids[i];
    }
  }
  return NULL;
}

static const char *solenoidState(const Solenoid &s) {
  if (s.active) {
    return "pressed";
  }
  return s.stuck ? "stuck" : "idle";
}

static void startPress(Solenoid &s, unsigned long ms) {
  digitalWrite(s.drivePin, HIGH);
  s.active = true;
  s.since = millis();
  s.duration = ms;
  s.presses++;
}

static void release(Solenoid &s) {
  digitalWrite(s.drivePin, LOW);
  if (s.active) {
    s.releasedAt = millis();
  }
  s.active = false;
}

static void updateSolenoids() {
  unsigned long now = millis();
  for (uint8_t i = 0; i < 2; i++) {
    Solenoid &s = solenoids[i];
    if (s.active && now - s.since >= s.duration) {
      release(s);
    }
    if (BRAMBLE_SENSE && !s.active && s.releasedAt && now - s.releasedAt >= BRAMBLE_STUCK_CHECK_MS) {
      s.stuck = digitalRead(s.sensePin) == LOW;
    }
  }
}

static void replyState(Stream &io) {
  char json[200];
  snprintf(json, sizeof(json),
           "{\"board\":\"%s\",\"kind\":\"buttons\",\"power\":\"%s\",\"reset\":\"%s\","
           "\"presses\":%lu,\"uptime_ms\":%lu,\"max_press_ms\":%d,\"hold_ms\":%d}",
           BRAMBLE_BOARD_NAME, solenoidState(solenoids[0]), solenoidState(solenoids[1]),
           solenoids[0].presses + solenoids[1].presses, millis(), BRAMBLE_MAX_PRESS_MS,
           BRAMBLE_HOLD_MS);
  brambleReply(io, 200, json);
}

static void handlePress(Stream &io, const BrambleRequest &req, bool hold) {
  char name[8];
  if (brambleParam(req.query, "button", name, sizeof(name)) != 0) {
    brambleError(io, 400, "button must be power or reset");
    return;
  }
  Solenoid *s = findSolenoid(name);
  if (s == NULL) {
    brambleError(io, 400, "button must be power or reset");
    return;
  }
  long ms = BRAMBLE_HOLD_MS;
  if (hold) {
    if (s != &solenoids[0]) {
      brambleError(io, 400, "only power can be held");
      return;
    }
  } else if (brambleIntParam(req.query, "ms", BRAMBLE_MIN_PRESS_MS, BRAMBLE_MAX_PRESS_MS, ms) != 0) {
    brambleError(io, 400, "ms must be 50..2000");
    return;
  }
  if (s->stuck) {
    brambleError(io, 503, "solenoid stuck");
    return;
  }
  if (s->active) {
    brambleError(io, 409, "already pressed");
    return;
  }
  startPress(*s, (unsigned long)ms);
  char json[96];
  snprintf(json, sizeof(json), "{\"button\":\"%s\",\"ms\":%ld,\"state\":\"pressed\"}", s->name, ms);
  brambleReply(io, 200, json);
}

static void handle(Stream &io) {
  BrambleRequest req;
  if (!brambleAccept(io, req)) {
    return;
  }
  bool post = strcmp(req.method, "POST") == 0;
  if (strcmp(req.path, "/state") == 0) {
    replyState(io);
  } else if (strcmp(req.path, "/press") == 0 || strcmp(req.path, "/hold") == 0) {
    if (!post) {
      brambleError(io, 405, "POST only");
      return;
    }
    handlePress(io, req, strcmp(req.path, "/hold") == 0);
  } else if (strcmp(req.path, "/release") == 0) {
    if (!post) {
      brambleError(io, 405, "POST only");
      return;
    }
    release(solenoids[0]);
    release(solenoids[1]);
    replyState(io);
  } else {
    brambleError(io, 404, "no such path");
  }
}

void setup() {
  for (uint8_t i = 0; i < 2; i++) {
    pinMode(solenoids[i].drivePin, OUTPUT);
    digitalWrite(solenoids[i].drivePin, LOW);
    pinMode(solenoids[i].sensePin, INPUT_PULLUP);
  }
  Serial.begin(BRAMBLE_SERIAL_BAUD);
  Ethernet.begin(mac, IPAddress(BRAMBLE_IP), IPAddress(BRAMBLE_GATEWAY), IPAddress(BRAMBLE_GATEWAY),
                 IPAddress(BRAMBLE_NETMASK));
  server.begin();
}

void loop() {
  updateSolenoids();
  brambleServe(server, handle);
}
