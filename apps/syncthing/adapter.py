#!/usr/bin/env python3
"""cmesh adapter for Syncthing (docs/apps.md): each peer runs one Syncthing with one
shared folder, and a record is a file in it.

- init: `syncthing generate` makes the device's key; its config is set before the
  first start so that nothing reaches outside the run: global and local discovery,
  relays, NAT traversal, usage and crash reporting, and upgrades are off, and it
  listens for devices on the peer's own port. Its REST API listens on a free loopback
  port with a fresh API key.
- The device id goes out on the sync service (topic `syncthing-device`); each
  neighbour's comes back as `published`. Syncthing starts once every neighbour's id is
  in (or after 20 s), with those devices and the shared folder already in its config,
  so its first dial connects; a neighbour that comes later is added through the API.
- write: the file `<record id>` is written and scanned at once (no file watcher), then
  `written`.
- seen: Syncthing's events API, `ItemFinished` for a file pulled from another device,
  with the event's own time (when Syncthing had the file), which is truer than when this
  adapter hears of it.
- links: the devices connected now, from /rest/system/connections every second.
- stop: Syncthing is shut down through its API.
Python 3.9+, standard library only; Syncthing 1.19 (Debian bookworm) or later.
"""
import datetime
import json
import os
import queue
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

FOLDER = "cmesh"
TOPIC = "syncthing-device"
_out = threading.Lock()


def send(message):
    with _out:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()


def fail(message):
    send({"type": "error", "message": message})
    sys.exit(1)


def micros(stamp):
    """Unix microseconds of an RFC 3339 time with up to nanoseconds (Syncthing's)."""
    m = re.match(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", stamp)
    if not m:
        return None
    zone = "+00:00" if m.group(3) == "Z" else m.group(3)
    base = datetime.datetime.fromisoformat(m.group(1) + zone)
    fraction = int((m.group(2) or "0")[:6].ljust(6, "0"))
    return int(base.timestamp()) * 1_000_000 + fraction


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Syncthing:
    def __init__(self, init):
        self.init = init
        self.home = os.path.join(init["data_dir"], "syncthing")
        self.folder = os.path.join(init["data_dir"], "shared")
        os.makedirs(os.path.join(self.folder, ".stfolder"), exist_ok=True)
        generated = subprocess.run(
            ["syncthing", "generate", "--home", self.home, "--no-default-folder"],
            capture_output=True, text=True,
        )
        found = re.search(r"Device ID: (\S+)", generated.stdout + generated.stderr)
        if generated.returncode != 0 or not found:
            fail("syncthing generate failed: " + (generated.stderr or generated.stdout)[-500:])
        self.device_id = found.group(1)
        self.api_key = os.urandom(16).hex()
        self.api = "127.0.0.1:%d" % free_port()
        self.devices = {}  # device id -> (name, address)
        self.lock = threading.Lock()
        self.process = None

    def start(self):
        self.configure()
        self.process = subprocess.Popen(
            ["syncthing", "serve", "--home", self.home, "--no-browser", "--no-restart",
             "--no-upgrade", "--gui-address", "http://" + self.api,
             "--gui-apikey", self.api_key, "--logflags", "0"],
            stdin=subprocess.DEVNULL, stdout=sys.stderr, stderr=sys.stderr,
        )

    def configure(self):
        """Everything off that would reach outside the run; listen on the peer's port;
        the neighbours known so far, and the folder shared with them."""
        path = os.path.join(self.home, "config.xml")
        tree = ET.parse(path)
        root = tree.getroot()
        folder = ET.SubElement(root, "folder", {
            "id": FOLDER, "label": FOLDER, "path": self.folder, "type": "sendreceive",
            "rescanIntervalS": "3600", "fsWatcherEnabled": "false"})
        for device_id in [self.device_id] + sorted(self.devices):
            ET.SubElement(folder, "device", {"id": device_id})
        for device_id, (name, address) in sorted(self.devices.items()):
            device = ET.SubElement(root, "device", {"id": device_id, "name": name})
            ET.SubElement(device, "address").text = "tcp://" + address
        options = root.find("options")
        port = self.init["listen"].rsplit(":", 1)[1]
        for name, value in {
            "listenAddress": "tcp://0.0.0.0:" + port,
            "globalAnnounceEnabled": "false",
            "localAnnounceEnabled": "false",
            "relaysEnabled": "false",
            "natEnabled": "false",
            "urAccepted": "-1",
            "crashReportingEnabled": "false",
            "autoUpgradeIntervalH": "0",
            "startBrowser": "false",
            "reconnectionIntervalS": "2",
            "progressUpdateIntervalS": "-1",
        }.items():
            element = options.find(name)
            if element is None:
                element = ET.SubElement(options, name)
            element.text = value
        tree.write(path)

    def call(self, method, path, body=None, timeout=30):
        request = urllib.request.Request(
            "http://%s%s" % (self.api, path), method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"X-API-Key": self.api_key, "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            text = answer.read()
            return json.loads(text) if text else None

    def wait_up(self, seconds=60):
        deadline = time.time() + seconds
        while time.time() < deadline:
            if self.process.poll() is not None:
                fail("syncthing exited at start (%s)" % self.process.returncode)
            try:
                self.call("GET", "/rest/system/ping", timeout=2)
                return
            except OSError:
                time.sleep(0.2)
        fail("syncthing's API did not answer within %d s" % seconds)

    def add_device(self, device_id, name, address):
        """A neighbour: into the config before the start, through the API after it."""
        with self.lock:
            if device_id in self.devices:
                return
            self.devices[device_id] = (name, address)
            if self.process is None:
                return
            self.call("PUT", "/rest/config/devices/" + device_id, {
                "deviceID": device_id, "name": name, "addresses": ["tcp://" + address],
            })
            ids = [self.device_id] + sorted(self.devices)
            self.call("PATCH", "/rest/config/folders/" + FOLDER,
                      {"devices": [{"deviceID": d} for d in ids]})

    def write(self, record, payload):
        with open(os.path.join(self.folder, record), "w") as f:
            f.write(payload)
        query = urllib.parse.urlencode({"folder": FOLDER, "sub": record})
        self.call("POST", "/rest/db/scan?" + query, timeout=60)

    def follow_events(self):
        since = 0
        while True:
            try:
                events = self.call(
                    "GET", "/rest/events?events=ItemFinished&timeout=30&since=%d" % since,
                    timeout=60) or []
            except OSError:
                if self.process.poll() is not None:
                    return
                time.sleep(0.5)
                continue
            for event in events:
                since = max(since, event["id"])
                data = event.get("data") or {}
                if (data.get("folder") == FOLDER and data.get("error") is None
                        and data.get("action") == "update" and data.get("type") == "file"):
                    message = {"type": "seen", "id": data["item"]}
                    at = micros(event.get("time", ""))
                    if at is not None:
                        message["at_us"] = at
                    send(message)

    def follow_links(self):
        last = None
        while self.process.poll() is None:
            try:
                connections = self.call("GET", "/rest/system/connections", timeout=10)
                count = sum(1 for c in connections["connections"].values() if c.get("connected"))
                if count != last:
                    send({"type": "links", "count": count})
                    last = count
            except OSError:
                pass
            time.sleep(1)

    def stop(self):
        try:
            self.call("POST", "/rest/system/shutdown", timeout=10)
        except OSError:
            pass
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()


def read_input(messages):
    for line in sys.stdin:
        messages.put(json.loads(line))
    messages.put({"type": "stop"})


def main():
    init = json.loads(sys.stdin.readline())
    if init.get("protocol") != 1:
        fail("this adapter speaks protocol 1, not %s" % init.get("protocol"))
    st = Syncthing(init)
    neighbours = {n["index"]: n for n in init["neighbours"]}
    messages = queue.Queue()
    threading.Thread(target=read_input, args=(messages,), daemon=True).start()
    send({"type": "publish", "topic": TOPIC, "value": st.device_id})
    send({"type": "subscribe", "topic": TOPIC, "from": "neighbours"})
    # The neighbours' device ids first (the peer writes nothing before `ready`).
    early = []
    deadline = time.time() + 20
    while len(st.devices) < len(neighbours) and time.time() < deadline:
        try:
            message = messages.get(timeout=max(0.0, deadline - time.time()))
        except queue.Empty:
            break
        if message["type"] == "published" and message["index"] in neighbours:
            n = neighbours[message["index"]]
            st.add_device(message["value"], n["peer"], n["addr"])
        else:
            early.append(message)
    st.start()
    st.wait_up()
    threading.Thread(target=st.follow_events, daemon=True).start()
    threading.Thread(target=st.follow_links, daemon=True).start()
    send({"type": "ready"})
    for message in early:
        messages.put(message)
    while True:
        message = messages.get()
        kind = message["type"]
        if kind == "write":
            st.write(message["id"], message["payload"])
            send({"type": "written", "id": message["id"]})
        elif kind == "published" and message["index"] in neighbours:
            n = neighbours[message["index"]]
            st.add_device(message["value"], n["peer"], n["addr"])
        elif kind == "neighbours":
            send({"type": "log", "level": "warn",
                  "message": "mobility: this adapter keeps its first neighbours"})
        elif kind == "stop":
            break
    st.stop()
    send({"type": "stopped"})


if __name__ == "__main__":
    try:
        main()
    except (OSError, ValueError, KeyError) as e:
        fail("%s: %s" % (type(e).__name__, e))
