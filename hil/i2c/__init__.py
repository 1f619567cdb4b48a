"""Emulated I2C chips for tests and the HIL plant: a drop-in for `smbus2.SMBus` (`bus.EmulatedBus`)
with register-level INA226 and ADS1115 emulators fed by the plant's physics.

Independent of edgeagent (never imports it): the emulators are written from the datasheets, so a
driver bug in byte order, sign or calibration maths shows up as a wrong reading, not a shared error.
"""
