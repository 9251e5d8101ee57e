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
// usage: node server.js <directory> <port> [bucket]
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
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
  await writeAtomically(resource('object'), data);
  return { size: data.length, md5 };
};

const OBJECT_SUFFIX = '._S3rver_object';

async function readConsistently(file) {
  // one open file: a rename over it meanwhile does not change what we read
  const handle = await fs.promises.open(file, 'r');
  try {
    const [stat, data] = await Promise.all([handle.stat(), handle.readFile()]);
    return { stat, data, md5: crypto.createHash('md5').update(data).digest('hex') };
  } finally {
    await handle.close();
  }
}

FilesystemStore.prototype.getObject = async function getObject(bucket, key, options) {
  let read;
  try {
    read = await readConsistently(this.getResourcePath(bucket, key, 'object'));
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

FilesystemStore.prototype.listObjects = async function listObjects(bucket, options) {
  const { delimiter = '', startAfter = '', prefix = '', maxKeys = Infinity } = options;
  const bucketPath = this.getBucketPath(bucket);
  // the deepest directory that holds every key under the prefix
  const root = path.join(bucketPath, prefix.slice(0, prefix.lastIndexOf('/') + 1));
  const keys = [];
  for await (const file of walkObjects(root)) {
    const key = path.relative(bucketPath, file).split(path.sep).join('/');
    keys.push(key.slice(0, -OBJECT_SUFFIX.length));
  }
  keys.sort();
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
  const stats = await Promise.all(
    page.map(key =>
      fs.promises.stat(this.getResourcePath(bucket, key, 'object')).catch(err => {
        if (err.code === 'ENOENT') return undefined; // deleted meanwhile
        throw err;
      }),
    ),
  );
  const objects = [];
  page.forEach((key, i) => {
    const stat = stats[i];
    if (!stat) return;
    objects.push(
      new S3Object(bucket, key, null, {
        // not an MD5 (reading every object's .md5 made each listing cost a read per key);
        // the broker uses only the key, size and time of a listing
        etag: JSON.stringify(`${Math.floor(stat.mtimeMs).toString(16)}-${stat.size.toString(16)}`),
        'last-modified': stat.mtime.toISOString(), // to the millisecond
        'content-length': stat.size,
      }),
    );
  });
  return { objects, commonPrefixes: [...commonPrefixes].sort(), isTruncated };
};

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
        const current = (await readConsistently(objectPath)).md5; // the bytes, not the .md5 file
        const wanted = ifMatch.replace(/"/g, '').trim();
        if (wanted !== '*' && wanted !== current) {
          return preconditionFailed(ctx, 412, 'PreconditionFailed');
        }
      }
      return next();
    });
  };
}

const [directory, port, bucket = 'tansu'] = process.argv.slice(2);
if (!directory || !port) {
  console.error('usage: node server.js <directory> <port> [bucket]');
  process.exit(2);
}
fs.mkdirSync(directory, { recursive: true });
const server = new S3rver({
  address: '127.0.0.1',
  port: Number(port),
  directory,
  silent: !process.env.S3RVER_DEBUG,
  configureBuckets: [{ name: bucket, configs: [] }],
});
server.middleware.unshift(conditionalWrites(server.store));
server.run(err => {
  if (err) {
    console.error(err);
    process.exit(1);
  }
  console.log(`s3rver (atomic writes) on 127.0.0.1:${port}, bucket ${bucket} in ${directory}`);
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    setTimeout(() => process.exit(0), 2000).unref(); // idle keep-alive sockets
    server.close(() => process.exit(0));
  });
}
