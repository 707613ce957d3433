// bramble lights board: the NeoPixel light on top of the cluster's cabinet.
// An Arduino Mega with an Ethernet shield and a NeoPixel strip on BRAMBLE_PIXEL_PIN. The
// bridges role renders bramble_settings.h (address, MAC, secret, pixel count and type: unique
// per board) and copies bramble_http.h beside this file. API (docs/bridges.md), every request
// with the X-Bramble-Secret header; colours are 0..255, w only on RGBW/GRBW strips:
//   GET  /state
//   POST /pixel?i=N&r=&g=&b=[&w=]       one pixel (stops any animation)
//   POST /pixels?from=N&data=HEX        consecutive pixels, 6 hex digits each (8 with white)
//   POST /fill?r=&g=&b=[&w=]            every pixel (stops any animation)
//   POST /brightness?v=0..255
//   POST /animation?name=NAME[&r=&g=&b=][&p=0..100]
//        off, rainbow, pulse (colour), chase (colour), progress (colour, p percent lit),
//        flash (colour, three times, then the previous animation comes back)
#include <SPI.h>
#include <Ethernet.h>
#include <Adafruit_NeoPixel.h>

#include "bramble_settings.h"
#include "bramble_http.h"

#define BRAMBLE_MAX_PIXELS_PER_REQUEST 24
#define BRAMBLE_FLASH_CYCLES 3
#define BRAMBLE_FLASH_STEP_MS 150
#define BRAMBLE_FRAME_MS 20

enum Animation { ANIM_OFF, ANIM_RAINBOW, ANIM_PULSE, ANIM_CHASE, ANIM_FLASH, ANIM_PROGRESS };
static const char *const ANIMATION_NAMES[] = {"off", "rainbow", "pulse", "chase", "flash", "progress"};
#define ANIMATION_COUNT 6

static byte mac[] = BRAMBLE_MAC;
EthernetServer server(BRAMBLE_PORT);
Adafruit_NeoPixel strip(BRAMBLE_PIXELS, BRAMBLE_PIXEL_PIN, BRAMBLE_PIXEL_TYPE + NEO_KHZ800);

struct Show {
  uint8_t animation;
  uint32_t color;
  uint8_t progress;
  uint8_t brightness;
  unsigned long started;
  unsigned long lastFrame;
};

static Show show = {ANIM_OFF, 0, 0, BRAMBLE_BRIGHTNESS, 0, 0};
static Show beforeFlash = show;

static int colourParams(Stream &io, const char *query, uint32_t &color) {
  long r = 0;
  long g = 0;
  long b = 0;
  long w = 0;
  if (brambleIntParam(query, "r", 0, 255, r) == 2 || brambleIntParam(query, "g", 0, 255, g) == 2 ||
      brambleIntParam(query, "b", 0, 255, b) == 2 || brambleIntParam(query, "w", 0, 255, w) == 2) {
    brambleError(io, 400, "colours are 0..255");
    return 2;
  }
  color = BRAMBLE_PIXEL_WHITE ? strip.Color(r, g, b, w) : strip.Color(r, g, b);
  return 0;
}

static void replyState(Stream &io) {
  char json[200];
  snprintf(json, sizeof(json),
           "{\"board\":\"%s\",\"kind\":\"lights\",\"pixels\":%d,\"type\":\"%s\",\"brightness\":%d,"
           "\"animation\":\"%s\",\"progress\":%d,\"uptime_ms\":%lu}",
           BRAMBLE_BOARD_NAME, BRAMBLE_PIXELS, BRAMBLE_PIXEL_TYPE_NAME, show.brightness,
           ANIMATION_NAMES[show.animation], show.progress, millis());
  brambleReply(io, 200, json);
}

static int hexDigit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static void handlePixels(Stream &io, const char *query) {
  const uint8_t width = BRAMBLE_PIXEL_WHITE ? 8 : 6;
  char data[BRAMBLE_MAX_PIXELS_PER_REQUEST * 8 + 1];
  long from = 0;
  if (brambleIntParam(query, "from", 0, BRAMBLE_PIXELS - 1, from) != 0) {
    brambleError(io, 400, "from must be a pixel index");
    return;
  }
  if (brambleParam(query, "data", data, sizeof(data)) != 0) {
    brambleError(io, 400, "data: up to 24 pixels of hex");
    return;
  }
  size_t len = strlen(data);
  size_t count = len / width;
  if (len == 0 || len % width != 0 || from + (long)count > BRAMBLE_PIXELS) {
    brambleError(io, 400, "data: whole pixels within the strip");
    return;
  }
  for (size_t i = 0; i < len; i++) {
    if (hexDigit(data[i]) < 0) {
      brambleError(io, 400, "data: hex digits only");
      return;
    }
  }
  for (size_t p = 0; p < count; p++) {
    uint8_t c[4] = {0, 0, 0, 0};
    for (uint8_t k = 0; k < width / 2; k++) {
      c[k] = hexDigit(data[p * width + 2 * k]) * 16 + hexDigit(data[p * width + 2 * k + 1]);
    }
    uint32_t color = BRAMBLE_PIXEL_WHITE ? strip.Color(c[0], c[1], c[2], c[3]) : strip.Color(c[0], c[1], c[2]);
    strip.setPixelColor(from + p, color);
  }
  show.animation = ANIM_OFF;
  strip.show();
  replyState(io);
}

static void handleAnimation(Stream &io, const char *query) {
  char name[12];
  int index = -1;
  if (brambleParam(query, "name", name, sizeof(name)) == 0) {
    for (uint8_t i = 0; i < ANIMATION_COUNT; i++) {
      if (strcmp(name, ANIMATION_NAMES[i]) == 0) {
        index = i;
      }
    }
  }
  if (index < 0) {
    brambleError(io, 400, "unknown animation");
    return;
  }
  uint32_t color = 0;
  long progress = 0;
  if (colourParams(io, query, color) != 0) {
    return;
  }
  if (brambleIntParam(query, "p", 0, 100, progress) == 2) {
    brambleError(io, 400, "p must be 0..100");
    return;
  }
  if (index == ANIM_FLASH && show.animation != ANIM_FLASH) {
    beforeFlash = show;
  }
  show.animation = index;
  show.color = color;
  show.progress = progress;
  show.started = millis();
  if (index == ANIM_OFF) {
    strip.clear();
    strip.show();
  }
  replyState(io);
}

static void handle(Stream &io) {
  BrambleRequest req;
  if (!brambleAccept(io, req)) {
    return;
  }
  bool post = strcmp(req.method, "POST") == 0;
  if (strcmp(req.path, "/state") == 0) {
    replyState(io);
    return;
  }
  bool known = strcmp(req.path, "/pixel") == 0 || strcmp(req.path, "/pixels") == 0 ||
               strcmp(req.path, "/fill") == 0 || strcmp(req.path, "/brightness") == 0 ||
               strcmp(req.path, "/animation") == 0;
  if (!known) {
    brambleError(io, 404, "no such path");
    return;
  }
  if (!post) {
    brambleError(io, 405, "POST only");
    return;
  }
  if (strcmp(req.path, "/pixels") == 0) {
    handlePixels(io, req.query);
  } else if (strcmp(req.path, "/animation") == 0) {
    handleAnimation(io, req.query);
  } else if (strcmp(req.path, "/brightness") == 0) {
    long v = 0;
    if (brambleIntParam(req.query, "v", 0, 255, v) != 0) {
      brambleError(io, 400, "v must be 0..255");
      return;
    }
    show.brightness = v;
    strip.setBrightness(v);
    strip.show();
    replyState(io);
  } else {
    long index = 0;
    uint32_t color = 0;
    bool one = strcmp(req.path, "/pixel") == 0;
    if (one && brambleIntParam(req.query, "i", 0, BRAMBLE_PIXELS - 1, index) != 0) {
      brambleError(io, 400, "i must be a pixel index");
      return;
    }
    if (colourParams(io, req.query, color) != 0) {
      return;
    }
    show.animation = ANIM_OFF;
    if (one) {
      strip.setPixelColor(index, color);
    } else {
      strip.fill(color, 0, BRAMBLE_PIXELS);
    }
    strip.show();
    replyState(io);
  }
}

static void frame() {
  unsigned long now = millis();
  if (show.animation == ANIM_OFF || now - show.lastFrame < BRAMBLE_FRAME_MS) {
    return;
  }
  show.lastFrame = now;
  unsigned long t = now - show.started;
  switch (show.animation) {
    case ANIM_RAINBOW:
      for (uint16_t i = 0; i < BRAMBLE_PIXELS; i++) {
        strip.setPixelColor(i, strip.gamma32(strip.ColorHSV((t * 16 + i * 65536UL / BRAMBLE_PIXELS) & 0xFFFF)));
      }
      break;
    case ANIM_PULSE: {
      uint16_t level = (t / 8) & 0x1FF;
      strip.fill(show.color, 0, BRAMBLE_PIXELS);
      strip.setBrightness(((level > 255 ? 511 - level : level) * (uint16_t)show.brightness) / 255);
      break;
    }
    case ANIM_CHASE:
      strip.clear();
      strip.setPixelColor((t / 60) % BRAMBLE_PIXELS, show.color);
      break;
    case ANIM_PROGRESS: {
      uint16_t lit = (uint32_t)BRAMBLE_PIXELS * show.progress / 100;
      strip.clear();
      strip.fill(show.color, 0, lit);
      break;
    }
    case ANIM_FLASH:
      if (t >= 2UL * BRAMBLE_FLASH_CYCLES * BRAMBLE_FLASH_STEP_MS) {
        show = beforeFlash;
        strip.setBrightness(show.brightness);
        strip.clear();
      } else if ((t / BRAMBLE_FLASH_STEP_MS) % 2 == 0) {
        strip.fill(show.color, 0, BRAMBLE_PIXELS);
      } else {
        strip.clear();
      }
      break;
  }
  strip.show();
}

void setup() {
  strip.begin();
  strip.setBrightness(show.brightness);
  strip.clear();
  strip.show();
  Serial.begin(BRAMBLE_SERIAL_BAUD);
  Ethernet.begin(mac, IPAddress(BRAMBLE_IP), IPAddress(BRAMBLE_GATEWAY), IPAddress(BRAMBLE_GATEWAY),
                 IPAddress(BRAMBLE_NETMASK));
  server.begin();
}

void loop() {
  frame();
  brambleServe(server, handle);
}
