// Declarations of the part of the Arduino Ethernet library the bramble sketches use, for the
// compile check in tests/bridge/test_firmware.py only: the library is not packaged in Debian.
// Nothing here is implemented; the check compiles, it does not link.
#ifndef BRAMBLE_STUB_ETHERNET_H
#define BRAMBLE_STUB_ETHERNET_H
#include <Arduino.h>
#include <Client.h>
#include <IPAddress.h>
#include <Server.h>

class EthernetClient : public Client {
 public:
  EthernetClient();
  int connect(IPAddress ip, uint16_t port) override;
  int connect(const char *host, uint16_t port) override;
  size_t write(uint8_t b) override;
  size_t write(const uint8_t *buf, size_t size) override;
  int available() override;
  int read() override;
  int read(uint8_t *buf, size_t size) override;
  int peek() override;
  void flush() override;
  void stop() override;
  uint8_t connected() override;
  operator bool() override;
};

class EthernetServer : public Server {
 public:
  explicit EthernetServer(uint16_t port);
  EthernetClient available();
  void begin() override;
  size_t write(uint8_t b) override;
  size_t write(const uint8_t *buf, size_t size) override;
};

class EthernetClass {
 public:
  void begin(uint8_t *mac, IPAddress ip, IPAddress dns, IPAddress gateway, IPAddress subnet);
};

extern EthernetClass Ethernet;
#endif
