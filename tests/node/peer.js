// Drives lwgate from lwm2m-node-lib 1.4.0, a third-party LwM2M server, and
// prints one JSON line per result for the pytest side (tests/test_node_peer.py).
// Usage: node peer.js PORT
'use strict';

const lwm2m = require('lwm2m-node-lib').server;
const port = parseInt(process.argv[2], 10);

function out(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function step(name, fn) {
  return new Promise((resolve) => {
    fn((err, value) => {
      out({ step: name, error: err ? String(err.name || err) : null, value: value === undefined ? null : value });
      resolve(value);
    });
  });
}

const config = {
  port,
  udpWindow: 100,
  defaultType: 'Device',
  logLevel: 'FATAL',
  ipProtocol: 'udp4',
  serverProtocol: 'udp4',
  formats: [{ name: 'application-vnd-oma-lwm2m/text', value: 1541 }],
  writeFormat: 'text/plain',
  types: [],
  deviceRegistry: { type: 'memory' },
};

let registered = null;

async function scenario(id) {
  await step('read /3/0/0', (cb) => lwm2m.read(id, '3', '0', '0', cb));
  await step('write /1/0/2', (cb) => lwm2m.write(id, '1', '0', '2', '5', cb));
  await step('read /1/0/2', (cb) => lwm2m.read(id, '1', '0', '2', cb));
  await step('execute /1/0/8', (cb) => lwm2m.execute(id, '1', '0', '8', null, cb));
  await step('discover /3/0', (cb) => lwm2m.discover(id, '3', '0', cb));
  await step('write-attributes /3/0/13', (cb) => lwm2m.writeAttributes(id, '3', '0', '13', { pmin: 1, pmax: 2 }, cb));
  await step('discover /3/0/13', (cb) => lwm2m.discover(id, '3', '0', '13', cb));
  let notified = false;
  await step('observe /3/0/13', (cb) =>
    lwm2m.observe(id, '3', '0', '13', (value) => {
      if (!notified) {
        notified = true;
        out({ step: 'notification /3/0/13', error: null, value });
      }
    }, cb));
  const deadline = Date.now() + 10000;
  while (!notified && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 100));
  }
  out({ step: 'done', error: null, value: null });
}

lwm2m.start(config, (err, serverInfo) => {
  if (err) {
    out({ step: 'start', error: String(err), value: null });
    process.exit(1);
  }
  lwm2m.setHandler(serverInfo, 'registration', (endpoint, lifetime, version, binding, payload, callback) => {
    out({ event: 'register', endpoint, lifetime, version, binding, payload });
    callback();
    setTimeout(() => {
      lwm2m.getDevice(endpoint, (e, device) => {
        registered = device;
        scenario(device.id).catch((x) => out({ step: 'scenario', error: String(x), value: null }));
      });
    }, 200);
  });
  lwm2m.setHandler(serverInfo, 'updateRegistration', (object, payload, callback) => {
    out({ event: 'update' });
    callback();
  });
  lwm2m.setHandler(serverInfo, 'unregistration', (device, callback) => {
    out({ event: 'unregister', endpoint: device && device.name });
    callback();
    setTimeout(() => process.exit(0), 200);
  });
  out({ step: 'listening', error: null, value: port });
});

setTimeout(() => {
  out({ step: 'timeout', error: 'no unregistration within 90 s', value: registered && registered.name });
  process.exit(2);
}, 90000);
