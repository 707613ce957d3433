"""The bridges: one authenticated API (bramble-bridge) for the head's power and reset buttons,
the NeoPixel light and the sound Pi (bramble-sound). See docs/bridges.md.

This package needs only the standard library and aiohttp (pyserial for serial boards), so that
the bridges role can ship it to a host on its own.
"""
