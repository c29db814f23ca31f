# The older platform's per-message script, ported to Roost as a plain Python function.
#
# Its devices publish {"measurement": "env", "sensor": "greenhouse-3", "data": {...}}, and the
# script was `main(data) -> data`. The same logic, with the record made explicit:

def init(config):
    print(f"myt-compat ready (config {config!r})")  # print() goes to Roost's log


def process(message):
    data = message.json()
    d = data["data"]
    if "temp" in d:                      # the boards send tenths of a degree
        d["temp"] = d["temp"] / 10.0
    d.pop("debug", None)                 # never stored
    return {"measurement": data["measurement"], "device": data["sensor"], "fields": d}
