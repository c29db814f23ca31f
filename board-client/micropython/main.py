# Example main.py for a board: join the Wi-Fi, then run the Roost board client for ever.
# Copy roost_board.py (or roost_board.mpy from mpy-cross) and this file to the board's flash,
# with your own settings below.
import network
import time

import roost_board

WIFI_SSID = "my-network"
WIFI_PASSWORD = "secret"

wlan = network.WLAN(network.STA_IF)
wlan.active(True)
if not wlan.isconnected():
    wlan.connect(WIFI_SSID, WIFI_PASSWORD)
    while not wlan.isconnected():
        time.sleep_ms(200)

roost_board.run({
    "name": "esp8266-008",       # the board name, also its MQTT client id
    "host": "roost.example",     # Roost's MQTT listener
    "port": 1883,
    "root": "/",                 # every path Roost names is inside this directory
    # "username": "esp8266-008", "password": "...",  # when the listener requires credentials
    # TLS (ESP32, RP2; not ESP8266): port 8883 and DER files from `roost tls init` / `roost tls device`
    # "ca": "/ca.der", "cert": "/esp32-001.der", "key": "/esp32-001.key.der",
    # "keepalive": 30,           # seconds
    # "max_payload": 4096,       # the largest command message; Roost sizes upload chunks to fit
    # "max_upload_bytes": 200000,
    # "state_file": "/roost_name.json",  # where a rename is remembered across resets
})
