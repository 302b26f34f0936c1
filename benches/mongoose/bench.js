// The Mongoose 9 side of benches/compare.rs: one round of every workload, the same sizes and
// documents, printed as one JSON object { workload: { ops, secs, cpu, peak_mib, heap_mib, latencies_ms } }.
// Usage: node bench.js <uri> <database> '<sizes as JSON>'
'use strict';
const mongoose = require('mongoose');

const [uri, dbName, sizesJson] = process.argv.slice(2);
const sizes = JSON.parse(sizesJson);

const itemSchema = new mongoose.Schema(
  { sku: String, qty: Number, priceCents: Number },
  { _id: false },
);
// The same stored shape as the Rust `Order`, version-checked saves on the `version` key.
const orderSchema = new mongoose.Schema(
  {
    customer: String,
    totalCents: Number,
    items: [itemSchema],
    status: String,
  },
  { versionKey: 'version', optimisticConcurrency: true, collection: 'orders' },
);
const Order = mongoose.model('Order', orderSchema);

function order(n) {
  const items = [];
  for (let i = 0; i < 4; i++) items.push({ sku: `sku-${i}`, qty: i + 1, priceCents: 250 });
  return { customer: `customer-${n % 97}`, totalCents: n * 10, items, status: 'open' };
}

// Peak RSS of the timed part, and peak live heap (JS heap and the buffers outside it) above
// its start, sampled (Node has no VmHWM reset and no allocation counter).
let peak = 0;
let heapPeak = 0;
const heapNow = () => {
  const m = process.memoryUsage();
  return m.heapUsed + m.external;
};
function sampleMemory() {
  peak = Math.max(peak, process.memoryUsage().rss);
  heapPeak = Math.max(heapPeak, heapNow());
}
const sampler = setInterval(sampleMemory, 20);
sampler.unref();

function timer() {
  peak = process.memoryUsage().rss;
  const heapAtStart = heapNow();
  heapPeak = heapAtStart;
  const cpu = process.cpuUsage();
  const started = process.hrtime.bigint();
  return {
    stop(ops) {
      const secs = Number(process.hrtime.bigint() - started) / 1e9;
      const used = process.cpuUsage(cpu);
      sampleMemory();
      return {
        ops, secs, cpu: (used.user + used.system) / 1e6, peak_mib: peak / 1048576,
        heap_mib: Math.max(0, heapPeak - heapAtStart) / 1048576, latencies_ms: [],
      };
    },
  };
}

async function seeded(n) {
  await Order.collection.drop().catch(() => {});
  if (n === 0) return [];
  const docs = [];
  for (let i = 0; i < n; i++) docs.push({ _id: new mongoose.Types.ObjectId(), ...order(i), version: 0 });
  await Order.collection.insertMany(docs);
  return docs.map((d) => d._id);
}

const workloads = {
  async 'insert one at a time'() {
    await seeded(0);
    const t = timer();
    for (let i = 0; i < sizes.singles; i++) await Order.create(order(i));
    return t.stop(sizes.singles);
  },
  async 'find by id'() {
    const ids = await seeded(sizes.singles);
    const t = timer();
    for (const id of ids) {
      if (!(await Order.findById(id))) throw new Error('missing');
    }
    return t.stop(ids.length);
  },
  async 'version-checked save'() {
    await seeded(sizes.singles);
    const docs = await Order.find({});
    const t = timer();
    for (const doc of docs) {
      doc.totalCents += 1;
      await doc.save();
    }
    return t.stop(docs.length);
  },
  async '$inc by id'() {
    const ids = await seeded(sizes.singles);
    const t = timer();
    for (const id of ids) await Order.updateOne({ _id: id }, { $inc: { totalCents: 1, version: 1 } });
    return t.stop(ids.length);
  },
  async '2-write transaction'() {
    await seeded(1);
    const t = timer();
    for (let i = 0; i < sizes.transactions; i++) {
      await mongoose.connection.transaction(async (session) => {
        await Order.create([order(2 * i)], { session });
        await Order.create([order(2 * i + 1)], { session });
      });
    }
    return t.stop(sizes.transactions);
  },
  async insert_many() {
    // `bulk_calls` calls, each into an empty collection, timed one by one and added up.
    let total = null;
    for (let call = 0; call < sizes.bulk_calls; call++) {
      await seeded(0);
      const docs = [];
      for (let i = 0; i < sizes.insert_many; i++) docs.push(order(i));
      const t = timer();
      await Order.insertMany(docs);
      const sample = t.stop(docs.length);
      total = total === null ? sample : {
        ops: total.ops + sample.ops,
        secs: total.secs + sample.secs,
        cpu: total.cpu + sample.cpu,
        peak_mib: Math.max(total.peak_mib, sample.peak_mib),
        heap_mib: Math.max(total.heap_mib, sample.heap_mib),
        latencies_ms: [],
      };
    }
    return total;
  },
  async 'find + decode all'() {
    await seeded(sizes.find_all);
    const t = timer();
    for (let call = 0; call < sizes.bulk_calls; call++) {
      const all = await Order.find({});
      if (all.length !== sizes.find_all) throw new Error('short read');
    }
    return t.stop(sizes.find_all * sizes.bulk_calls);
  },
  async 'find by filter and sort'() {
    await seeded(sizes.singles * 5);
    const t = timer();
    for (let i = 0; i < sizes.filtered; i++) {
      const found = await Order.find({ customer: 'customer-7', totalCents: { $gte: 1000 } }).sort({ totalCents: -1 });
      if (found.length === 0) throw new Error('nothing found');
    }
    return t.stop(sizes.filtered);
  },
  async '32 concurrent find_by_id'() {
    const ids = await seeded(1000);
    const t = timer();
    for (let round = 0; round < sizes.concurrent; round++) {
      const lookups = [];
      for (let k = 0; k < 32; k++) lookups.push(Order.findById(ids[(round * 32 + k * 31) % ids.length]));
      const found = await Promise.all(lookups);
      if (found.some((d) => !d)) throw new Error('missing');
    }
    return t.stop(sizes.concurrent * 32);
  },
  async '16 tasks x contended modify'() {
    const [id] = await seeded(1);
    const t = timer();
    const task = async () => {
      for (let i = 0; i < sizes.modify_each; i++) {
        for (;;) {
          const doc = await Order.findById(id);
          doc.totalCents += 1;
          try {
            await doc.save();
            break;
          } catch (e) {
            if (!(e instanceof mongoose.Error.VersionError)) throw e;
          }
        }
      }
    };
    const tasks = [];
    for (let k = 0; k < 16; k++) tasks.push(task());
    await Promise.all(tasks);
    const sample = t.stop(16 * sizes.modify_each);
    const last = await Order.findById(id);
    if (last.totalCents !== 16 * sizes.modify_each) throw new Error(`lost updates: ${last.totalCents}`);
    return sample;
  },
  async 'change-stream delivery'() {
    await seeded(1);
    const stream = Order.watch();
    const waiting = [];
    stream.on('change', () => {
      const resolve = waiting.shift();
      if (resolve) resolve();
    });
    // Mongoose opens the driver's stream in the background: until an event arrives, inserts
    // may be missed, so warm-up inserts go until one is seen.
    for (;;) {
      const seen = new Promise((resolve) => {
        waiting.push(resolve);
        setTimeout(resolve, 200, 'timeout');
      });
      await Order.create(order(0));
      if ((await seen) !== 'timeout') break;
      waiting.length = 0;
    }
    const latencies = [];
    const t = timer();
    for (let i = 0; i < sizes.events; i++) {
      const seen = new Promise((resolve) => waiting.push(resolve));
      const sent = process.hrtime.bigint();
      await Order.create(order(i));
      await seen;
      latencies.push(Number(process.hrtime.bigint() - sent) / 1e6);
    }
    const sample = t.stop(sizes.events);
    sample.latencies_ms = latencies;
    await stream.close();
    return sample;
  },
};

(async () => {
  await mongoose.connect(uri, { dbName });
  const results = {};
  for (const [name, run] of Object.entries(workloads)) results[name] = await run();
  await Order.collection.drop().catch(() => {});
  await mongoose.disconnect();
  process.stdout.write(JSON.stringify(results));
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
