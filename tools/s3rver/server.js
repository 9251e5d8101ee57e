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
// usage: node server.js <directory> <port> [bucket]
'use strict';

const crypto = require('crypto');
const fs = require('fs');
const path = require('path');
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
      const md5Path = store.getResourcePath(bucket, key, 'object.md5');
      const objectPath = store.getResourcePath(bucket, key, 'object');
      const exists = fs.existsSync(objectPath);
      if (ifNoneMatch === '*' && exists) {
        return preconditionFailed(ctx, 412, 'PreconditionFailed');
      }
      if (ifMatch) {
        if (!exists) return preconditionFailed(ctx, 404, 'NoSuchKey');
        const current = fs.readFileSync(md5Path, 'utf8').trim();
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
  silent: true,
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
