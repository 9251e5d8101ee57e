#!/usr/bin/env node
// s3rver with crash-safe writes, for the embedded broker's log (docs/backbone.md).
//
// s3rver 3.7.1 writes an object by truncating its file in place and answers before the
// write has finished: a store killed at that moment leaves an empty or torn object (we
// saw the broker lose its partition watermarks that way). Here every file of an object
// (data, md5, metadata) is written to a temporary name and renamed over the old one once
// complete, and the request is answered only after that: a crash leaves the old version
// or the new one, never a torn one.
//
// Tansu also needs conditional writes (If-None-Match: * to create, If-Match: <etag> to
// update): its restarted broker tries to create each partition watermark and, on 412, reads
// the stored one. s3rver ignores both headers, so a restarted broker overwrote its own
// watermarks and then the batches after them. They are honoured here, one request per key
// at a time.
//
// Reads are made consistent too: a GET reads the object's bytes once, from one open file, and
// answers the ETag (MD5) of exactly those bytes; s3rver took the ETag from the .md5 file and
// the length from a stat before opening the data, so a GET racing a PUT could pair the new
// ETag with the old bytes (the broker would then overwrite its watermark from a stale value).
//
// Listing (what the broker does on every fetch, over a partition's whole log): s3rver 3.7.1
// walked the whole bucket with a synchronous stat per file and read two files per key, and
// its continuation token (for listings over 1,000 keys) used DES, which Node.js 17+ (OpenSSL
// 3) refuses: any partition of more than 1,000 batches answered 500 and became unreadable.
// Here a listing walks only the prefix's directory, stats only the keys of the page it
// answers, reports modification times to the millisecond (s3rver's were to the second), and
// the continuation token is the last key, base64-encoded.
//
// Encryption at rest (like S3's server-side encryption): with LLMOPS_LOG_STORE_KEY_FILE naming a
// file of 32 random bytes (hex) kept outside <directory>, every object's bytes are stored as
// AES-256-GCM ciphertext (magic, 12-byte IV, ciphertext, 16-byte tag; the object's key is
// authenticated data) and decrypted on GET. ETags stay the MD5 of the plaintext (what S3 does
// and what tansu's If-Match compares), listings and HEAD report the plaintext's size. Objects
// stored in clear by an earlier store are encrypted in place at start-up.
//
// Retention (like Kafka's log cleaner): every LLMOPS_LOG_SWEEP_INTERVAL_S (default 60) the store
// reads each cluster's meta.json (where tansu keeps every topic's configs) and deletes the
// record batches (topics/<topic>/partitions/<n>/records/*.batch) older than the topic's
// retention.ms (their age: when the store wrote them). Topics without retention.ms, or with -1,
// keep everything; watermarks and group offsets are never touched. tansu reads over the holes:
// a fetch below the first surviving batch gets that batch (docs/backbone.md).
//
// usage: node server.js <directory> <port> [bucket]
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
const { AsyncLocalStorage } = require('async_hooks');
const { Readable } = require('stream');

// s3rver's continuation token: DES "encryption" of region/bucket/key (not a secret; DES is
// unavailable under OpenSSL 3). An identity cipher keeps its format and round-trips it.
const realCreateCipheriv = crypto.createCipheriv;
const realCreateDecipheriv = crypto.createDecipheriv;
function identityCipher() {
  return {
    update: data => (Buffer.isBuffer(data) ? data : Buffer.from(data, 'utf8')),
    final: () => Buffer.alloc(0),
  };
}
crypto.createCipheriv = (algorithm, ...rest) =>
  algorithm === 'des' ? identityCipher() : realCreateCipheriv(algorithm, ...rest);
crypto.createDecipheriv = (algorithm, ...rest) =>
  algorithm === 'des' ? identityCipher() : realCreateDecipheriv(algorithm, ...rest);

const S3rver = require('s3rver');
const FilesystemStore = require('s3rver/lib/stores/filesystem');
const S3Object = require('s3rver/lib/models/object');

async function writeAtomically(file, data) {
  await fs.promises.mkdir(path.dirname(file), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}-${crypto.randomBytes(6).toString('hex')}`;
  await fs.promises.writeFile(tmp, data);
  await fs.promises.rename(tmp, file);
}

async function readAll(content) {
  if (Buffer.isBuffer(content)) return content;
  const chunks = [];
  for await (const chunk of content) chunks.push(Buffer.from(chunk));
  return Buffer.concat(chunks);
}

// -- encryption at rest --------------------------------------------------------------------
const MAGIC = Buffer.from('LLMOPSE1');
const IV_BYTES = 12;
const TAG_BYTES = 16;
const OVERHEAD = MAGIC.length + IV_BYTES + TAG_BYTES;
let dataKey = null; // 32 bytes when encrypting; null: objects stored in clear

function loadKey(file) {
  const key = Buffer.from(fs.readFileSync(file, 'utf8').trim(), 'hex');
  if (key.length !== 32) {
    throw new Error(`${file} must hold 32 bytes in hex (64 characters); it holds ${key.length}`);
  }
  return key;
}

function isSealed(blob) {
  return blob.length >= OVERHEAD && blob.subarray(0, MAGIC.length).equals(MAGIC);
}

function seal(plain, aad) {
  if (!dataKey) return plain;
  const iv = crypto.randomBytes(IV_BYTES);
  const cipher = crypto.createCipheriv('aes-256-gcm', dataKey, iv);
  cipher.setAAD(Buffer.from(aad, 'utf8'));
  const body = Buffer.concat([cipher.update(plain), cipher.final()]);
  return Buffer.concat([MAGIC, iv, body, cipher.getAuthTag()]);
}

function unseal(blob, aad) {
  if (!isSealed(blob)) return blob; // stored in clear (before encryption was turned on)
  if (!dataKey) throw new Error(`object ${aad} is encrypted and the store has no key`);
  const iv = blob.subarray(MAGIC.length, MAGIC.length + IV_BYTES);
  const decipher = crypto.createDecipheriv('aes-256-gcm', dataKey, iv);
  decipher.setAAD(Buffer.from(aad, 'utf8'));
  decipher.setAuthTag(blob.subarray(blob.length - TAG_BYTES));
  try {
    const body = blob.subarray(MAGIC.length + IV_BYTES, blob.length - TAG_BYTES);
    return Buffer.concat([decipher.update(body), decipher.final()]);
  } catch (err) {
    throw new Error(`object ${aad} does not decrypt under this key (another key, or damaged)`);
  }
}

// the plaintext's size from a stored file's size (every object is sealed once the store has
// encrypted the clear ones at start-up)
const plainSize = size => (dataKey ? Math.max(0, size - OVERHEAD) : size);

FilesystemStore.prototype.putObject = async function putObject(object) {
  const data = await readAll(object.content);
  const md5 = crypto.createHash('md5').update(data).digest('hex');
  const metadata = {};
  for (const [name, value] of Object.entries(object.metadata || {})) {
    if (S3Object.ALLOWED_METADATA.includes(name) || name.startsWith('x-amz-meta-')) {
      metadata[name] = value;
    }
  }
  const resource = kind => this.getResourcePath(object.bucket, object.key, kind);
  // metadata first, data last: a key is listed (and readable) only once its data is there
  await writeAtomically(resource('metadata.json'), JSON.stringify(metadata, null, 2));
  await writeAtomically(resource('object.md5'), md5);
  await writeAtomically(resource('object'), seal(data, `${object.bucket}/${object.key}`));
  const stat = await fs.promises.stat(resource('object'));
  indexSet(resource('object'), object.key, data.length, stat.mtimeMs);
  return { size: data.length, md5 };
};

const realGetMetadata = FilesystemStore.prototype.getMetadata;
FilesystemStore.prototype.getMetadata = async function getMetadata(bucket, key) {
  const metadata = await realGetMetadata.call(this, bucket, key);
  return { ...metadata, 'content-length': plainSize(metadata['content-length']) };
};

const OBJECT_SUFFIX = '._S3rver_object';

async function readConsistently(file, aad) {
  // one open file: a rename over it meanwhile does not change what we read
  const handle = await fs.promises.open(file, 'r');
  try {
    const [stat, stored] = await Promise.all([handle.stat(), handle.readFile()]);
    const data = unseal(stored, aad);
    return { stat, data, md5: crypto.createHash('md5').update(data).digest('hex') };
  } finally {
    await handle.close();
  }
}

FilesystemStore.prototype.getObject = async function getObject(bucket, key, options) {
  let read;
  try {
    read = await readConsistently(this.getResourcePath(bucket, key, 'object'), `${bucket}/${key}`);
  } catch (err) {
    if (err.code === 'ENOENT') return null;
    throw err;
  }
  const stored = await fs.promises
    .readFile(this.getResourcePath(bucket, key, 'metadata.json'))
    .then(JSON.parse)
    .catch(() => ({}));
  const { data, stat, md5 } = read;
  const metadata = {
    ...stored,
    etag: JSON.stringify(md5),
    'last-modified': stat.mtime.toUTCString(),
    'content-length': data.length,
  };
  const lastByte = Math.max(0, data.length - 1);
  const ranged = options && (options.start !== undefined || options.end);
  const range = {
    start: (options && options.start) || 0,
    end: Math.min((options && options.end) || Infinity, lastByte),
  };
  if (range.start < 0 || range.end < range.start) {
    const object = new S3Object(bucket, key, null, metadata);
    if (ranged) object.range = range;
    return object;
  }
  const content = Readable.from([data.subarray(range.start, range.end + 1)]);
  const object = new S3Object(bucket, key, content, metadata);
  if (ranged) object.range = range;
  return object;
};

async function* walkObjects(dir) {
  let entries;
  try {
    entries = await fs.promises.readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return;
    throw err;
  }
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) yield* walkObjects(full);
    else if (entry.name.endsWith(OBJECT_SUFFIX)) yield full;
  }
}

// -- the listing index ----------------------------------------------------------------------
// Per listed directory (the deepest one holding a prefix's keys): every key under it with its
// plaintext size and modification time, built by one walk at its first listing and kept up to
// date by this process' writes and deletes (the only writer of the directory). A listing then
// costs no file system call.
const listingIndex = new Map(); // root directory -> { items: Map(key -> {size, mtimeMs}), sorted }

function indexedRoots(file) {
  const roots = [];
  for (const [root, entry] of listingIndex) {
    if (file.startsWith(root.endsWith(path.sep) ? root : root + path.sep)) roots.push(entry);
  }
  return roots;
}

function indexSet(file, key, size, mtimeMs) {
  for (const entry of indexedRoots(file)) {
    if (!entry.items.has(key)) entry.sorted = null;
    entry.items.set(key, { size, mtimeMs });
  }
}

function indexDelete(file, key) {
  for (const entry of indexedRoots(file)) {
    if (entry.items.delete(key)) entry.sorted = null;
  }
}

async function indexOf(bucketPath, root) {
  let entry = listingIndex.get(root);
  if (!entry) {
    // registered before the walk: writes meanwhile update it too
    entry = { items: new Map(), sorted: null, ready: null };
    listingIndex.set(root, entry);
    entry.ready = (async () => {
      for await (const file of walkObjects(root)) {
        const stat = await fs.promises.stat(file).catch(() => null);
        if (!stat) continue; // deleted meanwhile
        const key = path.relative(bucketPath, file).split(path.sep).join('/');
        const name = key.slice(0, -OBJECT_SUFFIX.length);
        if (!entry.items.has(name)) {
          entry.items.set(name, { size: plainSize(stat.size), mtimeMs: stat.mtimeMs });
        }
      }
    })();
    entry.ready.catch(() => listingIndex.delete(root));
  }
  await entry.ready;
  if (!entry.sorted) entry.sorted = [...entry.items.keys()].sort();
  return entry;
}

const realDeleteObject = FilesystemStore.prototype.deleteObject;
FilesystemStore.prototype.deleteObject = async function deleteObject(bucket, key) {
  indexDelete(this.getResourcePath(bucket, key, 'object'), key);
  return realDeleteObject.call(this, bucket, key);
};

FilesystemStore.prototype.copyObject = async function copyObject() {
  // copies bytes as stored (sealed under the source key's authenticated data): refused, the
  // broker never copies
  throw new Error('CopyObject is not supported by this store');
};

FilesystemStore.prototype.listObjects = async function listObjects(bucket, options) {
  const { delimiter = '', startAfter = '', prefix = '' } = options;
  const maxKeys = (listing.getStore() || {}).unbounded ? Infinity : options.maxKeys || Infinity;
  const bucketPath = this.getBucketPath(bucket);
  // the deepest directory that holds every key under the prefix
  const root = path.join(bucketPath, prefix.slice(0, prefix.lastIndexOf('/') + 1));
  const entry = await indexOf(bucketPath, root);
  const keys = entry.sorted;
  const commonPrefixes = new Set();
  const page = [];
  let isTruncated = false;
  for (const key of keys) {
    if (key <= startAfter || !key.startsWith(prefix)) continue;
    if (delimiter) {
      const idx = key.slice(prefix.length).indexOf(delimiter);
      if (idx !== -1) {
        commonPrefixes.add(key.slice(0, prefix.length + idx + 1));
        continue;
      }
    }
    if (page.length >= maxKeys) {
      isTruncated = true;
      break;
    }
    page.push(key);
  }
  const objects = [];
  for (const key of page) {
    const item = entry.items.get(key);
    if (!item) continue;
    // what s3rver's listing reads of an object (an S3Object costs ~50 us to build)
    objects.push({
      key,
      // not an MD5 (reading every object's .md5 made each listing cost a read per key);
      // the broker uses only the key, size and time of a listing
      metadata: { etag: JSON.stringify(`${Math.floor(item.mtimeMs).toString(16)}-${item.size.toString(16)}`) },
      size: item.size,
      lastModifiedDate: new Date(item.mtimeMs), // to the millisecond
    });
  }
  return { objects, commonPrefixes: [...commonPrefixes].sort(), isTruncated };
};

// Listings must be fast: the broker's fetch (tansu 0.6.0 as shipped, upstream e2a6eab
// "propagate max_wait into storage") lists the partition's whole records/ and stops reading the
// listing once the consumer's fetch.max.wait.ms has passed since the fetch began: the batches
// listed after that are not seen. A listing slower than that wait (measured: ~1,000+ batches
// here with a 10 ms wait, a few thousand with aiokafka's 500 ms) made a consumer at the end of
// the partition get nothing, forever. So listings are answered from an in-memory index (below),
// and a ListObjectsV2 without max-keys (tansu's) gets every key in one page instead of one
// round trip per 1,000 keys. Clients that ask for max-keys still get pages.
const listing = new AsyncLocalStorage();

function unboundedListings() {
  return async (ctx, next) => {
    const unbounded =
      ctx.method === 'GET' &&
      ctx.query['list-type'] === '2' &&
      !ctx.query['max-keys'] &&
      !ctx.query['continuation-token'];
    return unbounded ? listing.run({ unbounded: true }, next) : next();
  };
}

const locks = new Map();

async function withKeyLock(key, fn) {
  const previous = locks.get(key) || Promise.resolve();
  let release;
  const current = new Promise(resolve => (release = resolve));
  const chained = previous.then(() => current);
  locks.set(key, chained);
  await previous;
  try {
    return await fn();
  } finally {
    release();
    if (locks.get(key) === chained) locks.delete(key);
  }
}

function preconditionFailed(ctx, status, code) {
  ctx.status = status;
  ctx.type = 'application/xml';
  ctx.body =
    '<?xml version="1.0" encoding="UTF-8"?>' +
    `<Error><Code>${code}</Code><Message>At least one of the pre-conditions you ` +
    'specified did not hold</Message></Error>';
}

function conditionalWrites(store) {
  return async (ctx, next) => {
    const ifNoneMatch = ctx.get('if-none-match');
    const ifMatch = ctx.get('if-match');
    const parts = ctx.path.split('/').filter(Boolean);
    if (ctx.method !== 'PUT' || parts.length < 2 || (!ifNoneMatch && !ifMatch)) {
      return next();
    }
    const [bucket, ...rest] = parts.map(decodeURIComponent);
    const key = rest.join('/');
    return withKeyLock(`${bucket}/${key}`, async () => {
      const objectPath = store.getResourcePath(bucket, key, 'object');
      const exists = fs.existsSync(objectPath);
      if (ifNoneMatch === '*' && exists) {
        return preconditionFailed(ctx, 412, 'PreconditionFailed');
      }
      if (ifMatch) {
        if (!exists) return preconditionFailed(ctx, 404, 'NoSuchKey');
        // the bytes' (plaintext) MD5, not the .md5 file
        const current = (await readConsistently(objectPath, `${bucket}/${key}`)).md5;
        const wanted = ifMatch.replace(/"/g, '').trim();
        if (wanted !== '*' && wanted !== current) {
          return preconditionFailed(ctx, 412, 'PreconditionFailed');
        }
      }
      return next();
    });
  };
}

// -- start-up: encrypt what an earlier store kept in clear ---------------------------------
async function sealClearObjects(bucketPath) {
  let sealed = 0;
  for await (const file of walkObjects(bucketPath)) {
    const key = path.relative(path.dirname(bucketPath), file).split(path.sep).join('/');
    const aad = key.slice(0, -OBJECT_SUFFIX.length); // <bucket>/<key>
    const handle = await fs.promises.open(file, 'r');
    const head = Buffer.alloc(MAGIC.length);
    let stat;
    try {
      stat = await handle.stat();
      await handle.read(head, 0, MAGIC.length, 0);
    } finally {
      await handle.close();
    }
    if (head.equals(MAGIC) && stat.size >= OVERHEAD) {
      // sealed already; the wrong key is caught here, before the broker reads anything
      if (aad.endsWith('/meta.json')) unseal(await fs.promises.readFile(file), aad);
      continue;
    }
    const stored = await fs.promises.readFile(file);
    await writeAtomically(file, seal(stored, aad));
    await fs.promises.utimes(file, stat.atimeMs / 1000, stat.mtimeMs / 1000); // its age
    sealed += 1;
  }
  return sealed;
}

// -- retention ------------------------------------------------------------------------------
async function readJsonObject(bucketPath, key) {
  const file = path.join(bucketPath, key + OBJECT_SUFFIX);
  const bucketName = path.basename(bucketPath);
  try {
    return JSON.parse(unseal(await fs.promises.readFile(file), `${bucketName}/${key}`));
  } catch (err) {
    if (err.code === 'ENOENT') return null;
    throw err;
  }
}

async function listDir(dir) {
  try {
    return await fs.promises.readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return [];
    throw err;
  }
}

function retentionOf(topic) {
  const configs = (topic && topic.topic && topic.topic.configs) || [];
  const entry = configs.find(c => c.name === 'retention.ms');
  const ms = entry ? Number(entry.value) : NaN;
  return Number.isFinite(ms) && ms >= 0 ? ms : null; // -1 or none: keep for good
}

// delete every record batch older than its topic's retention.ms; returns how many
async function sweep(store, bucketName) {
  const bucketPath = store.getBucketPath(bucketName);
  const now = Date.now();
  let deleted = 0;
  for (const cluster of await listDir(path.join(bucketPath, 'clusters'))) {
    if (!cluster.isDirectory()) continue;
    const base = `clusters/${cluster.name}`;
    const meta = await readJsonObject(bucketPath, `${base}/meta.json`);
    const topics = (meta && meta.topics) || {};
    for (const [name, topic] of Object.entries(topics)) {
      const retention = retentionOf(topic);
      if (retention === null) continue;
      const partitions = path.join(bucketPath, base, 'topics', name, 'partitions');
      for (const partition of await listDir(partitions)) {
        const records = path.join(partitions, partition.name, 'records');
        for (const entry of await listDir(records)) {
          if (!entry.name.endsWith(`.batch${OBJECT_SUFFIX}`)) continue;
          const file = path.join(records, entry.name);
          const stat = await fs.promises.stat(file).catch(() => null);
          if (!stat || now - stat.mtimeMs <= retention) continue;
          const key = path.relative(bucketPath, file).split(path.sep).join('/');
          const objectKey = key.slice(0, -OBJECT_SUFFIX.length);
          await withKeyLock(`${bucketName}/${objectKey}`, async () => {
            indexDelete(store.getResourcePath(bucketName, objectKey, 'object'), objectKey);
            // the object first: once it is gone the key is no longer listed nor readable
            for (const kind of ['object', 'object.md5', 'metadata.json']) {
              await fs.promises
                .unlink(store.getResourcePath(bucketName, objectKey, kind))
                .catch(err => {
                  if (err.code !== 'ENOENT') throw err;
                });
            }
          });
          deleted += 1;
        }
      }
    }
  }
  return deleted;
}

function startSweeper(store, bucketName, intervalS) {
  let running = false;
  const tick = async () => {
    if (running) return;
    running = true;
    try {
      const deleted = await sweep(store, bucketName);
      if (deleted) console.log(`retention: deleted ${deleted} record batches past their topic's retention.ms`);
    } catch (err) {
      console.error('retention sweep failed:', err);
    } finally {
      running = false;
    }
  };
  setTimeout(tick, 1000).unref(); // once soon after start: a log kept over a long `down`
  setInterval(tick, intervalS * 1000).unref();
}

async function main() {
  const [directory, port, bucket = 'tansu'] = process.argv.slice(2);
  if (!directory || !port) {
    console.error('usage: node server.js <directory> <port> [bucket]');
    process.exit(2);
  }
  const keyFile = process.env.LLMOPS_LOG_STORE_KEY_FILE;
  if (keyFile) {
    if (path.resolve(keyFile).startsWith(path.resolve(directory) + path.sep)) {
      throw new Error(`the key file ${keyFile} must not live inside the log directory ${directory}`);
    }
    dataKey = loadKey(keyFile);
  }
  const intervalS = Number(process.env.LLMOPS_LOG_SWEEP_INTERVAL_S || 60);
  if (!(intervalS > 0)) throw new Error(`LLMOPS_LOG_SWEEP_INTERVAL_S must be > 0, got ${intervalS}`);
  fs.mkdirSync(directory, { recursive: true });
  const server = new S3rver({
    address: '127.0.0.1',
    port: Number(port),
    directory,
    silent: !process.env.S3RVER_DEBUG,
    configureBuckets: [{ name: bucket, configs: [] }],
  });
  server.middleware.unshift(conditionalWrites(server.store));
  server.middleware.unshift(unboundedListings());
  if (dataKey) {
    const sealed = await sealClearObjects(server.store.getBucketPath(bucket));
    if (sealed) console.log(`encrypted ${sealed} objects stored in clear by an earlier store`);
  }
  await new Promise((resolve, reject) => server.run(err => (err ? reject(err) : resolve())));
  startSweeper(server.store, bucket, intervalS);
  console.log(
    `s3rver (atomic writes) on 127.0.0.1:${port}, bucket ${bucket} in ${directory}; ` +
      `objects ${dataKey ? 'encrypted (AES-256-GCM)' : 'in clear'}; retention sweep every ${intervalS} s`,
  );
  for (const signal of ['SIGTERM', 'SIGINT']) {
    process.on(signal, () => {
      setTimeout(() => process.exit(0), 2000).unref(); // idle keep-alive sockets
      server.close(() => process.exit(0));
    });
  }
}

main().catch(err => {
  console.error(`log store: ${err.message || err}`);
  process.exit(1);
});
