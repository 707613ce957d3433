// Declarations of the part of the Adafruit NeoPixel library the bramble lights sketch uses (same
// names, signatures and pixel-type constants), for the compile check in
// tests/bridge/test_firmware.py only: the library is not packaged in Debian. Not an implementation.
#ifndef BRAMBLE_STUB_NEOPIXEL_H
#define BRAMBLE_STUB_NEOPIXEL_H
#include <Arduino.h>

#define NEO_RGB ((0 << 6) | (0 << 4) | (1 << 2) | (2))
#define NEO_GRB ((1 << 6) | (1 << 4) | (0 << 2) | (2))
#define NEO_RGBW ((3 << 6) | (0 << 4) | (1 << 2) | (2))
#define NEO_GRBW ((3 << 6) | (1 << 4) | (0 << 2) | (2))
#define NEO_KHZ800 0x0000

typedef uint16_t neoPixelType;

class Adafruit_NeoPixel {
 public:
  Adafruit_NeoPixel(uint16_t n, int16_t pin, neoPixelType type);
  void begin();
  void show();
  void clear();
  void setBrightness(uint8_t b);
  void setPixelColor(uint16_t n, uint32_t c);
  void fill(uint32_t c, uint16_t first, uint16_t count);
  static uint32_t Color(uint8_t r, uint8_t g, uint8_t b);
  static uint32_t Color(uint8_t r, uint8_t g, uint8_t b, uint8_t w);
  static uint32_t ColorHSV(uint16_t hue, uint8_t sat = 255, uint8_t val = 255);
  static uint32_t gamma32(uint32_t x);
};
#endif
