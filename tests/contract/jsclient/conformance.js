// The conformance run of cozy-stack-client (cozy-stack's official JavaScript client) against the
// cozy-stack double: the client's own calls, unmodified, as an application makes them.
//
// Usage: node conformance.js <node_modules dir> <public URL> <instance host> <token>
// The client talks to <public URL> with Host: <instance host> (the double routes by Host). It
// prints one JSON object: {"results": [{"call", "ok", "error"}...]}. A call is ok when the
// client's promise resolves and the check of its answer holds; otherwise "error" tells why.
'use strict'

const path = require('path')
const [modules, url, host, token] = process.argv.slice(2)
const req = name => require(path.join(modules, name))
const CozyStackClient = req('cozy-stack-client').default

// Node's fetch sets the Host header from the URL: a relay on 127.0.0.1 passes every request on to
// the double with the instance's Host (the double routes by Host), bodies and answers untouched.
const http = require('http')
const target = new URL(url)
function relay () {
  const server = http.createServer((inReq, inRes) => {
    const out = http.request({
      host: target.hostname,
      port: target.port,
      method: inReq.method,
      path: inReq.url,
      headers: { ...inReq.headers, host }
    }, res => {
      inRes.writeHead(res.statusCode, res.headers)
      res.pipe(inRes)
    })
    out.on('error', err => { inRes.writeHead(502); inRes.end(String(err)) })
    inReq.pipe(out)
  })
  return new Promise(resolve => server.listen(0, '127.0.0.1', () => resolve(server)))
}

let client, files, data, settings, perms

const results = []
function check (cond, what) {
  if (!cond) throw new Error('check failed: ' + what)
}
async function call (name, fn) {
  try {
    const value = await fn()
    results.push({ call: name, ok: true })
    return value
  } catch (err) {
    const status = err && err.status
    const reason = err && (err.reason ? JSON.stringify(err.reason) : err.message)
    results.push({ call: name, ok: false, error: `${status || ''} ${reason}`.trim().slice(0, 400) })
    return undefined
  }
}

const ROOT = 'io.cozy.files.root-dir'
const TRASH = 'io.cozy.files.trash-dir'

async function main () {
  const server = await relay()
  const base = `http://127.0.0.1:${server.address().port}`
  client = new CozyStackClient({ uri: base, token })
  files = client.collection('io.cozy.files')
  data = client.collection('io.cozy.cozyops.conformance')
  settings = client.collection('io.cozy.settings')
  perms = client.collection('io.cozy.permissions')
  try {
    await calls()
  } finally {
    server.close()
  }
}

async function calls () {
  // --- settings and permissions
  await call('settings.get(instance)', async () => {
    const r = await settings.get('io.cozy.settings.instance')
    check(r.data && r.data.attributes && r.data.attributes.locale, 'instance locale')
  })
  await call('settings.get(capabilities)', async () => {
    const r = await settings.get('io.cozy.settings.capabilities')
    check(r.data && typeof r.data.attributes.file_versioning === 'boolean', 'capabilities')
  })
  await call('settings.get(disk-usage)', async () => {
    const r = await settings.get('io.cozy.settings.disk-usage')
    check(r.data && r.data.attributes && r.data.attributes.used !== undefined, 'disk usage')
  })
  await call('settings.update(instance)', async () => {
    const r = await settings.get('io.cozy.settings.instance')
    const doc = { ...r.data, _id: 'io.cozy.settings.instance', attributes: { ...r.data.attributes, tz: 'Europe/Paris' } }
    const u = await settings.update(doc)
    check(u.data.attributes.tz === 'Europe/Paris', 'tz updated')
  })
  await call('permissions.fetchOwnPermissions', async () => {
    const r = await perms.fetchOwnPermissions()
    check(r.data && r.data.attributes && r.data.attributes.permissions, 'permission set')
  })

  // --- files: directories and stats
  const root = await call('files.statById(root)', async () => {
    const r = await files.statById(ROOT)
    check(r.data._id === ROOT && Array.isArray(r.included), 'root with children')
    return r
  })
  void root
  await call('files.statByPath(/)', async () => {
    const r = await files.statByPath('/')
    check(r.data._id === ROOT, 'root by path')
  })
  const dir = await call('files.createDirectory', async () => {
    const r = await files.createDirectory({ name: 'conformance', dirId: ROOT })
    check(r.data.type === 'directory' && r.data.path === '/conformance', 'directory')
    return r.data
  })
  const dirId = dir && dir._id
  await call('files.createDirectoryByPath', async () => {
    const r = await files.createDirectoryByPath('/conformance/a/b')
    check(r.data.path === '/conformance/a/b', 'path')
  })
  await call('files.getDirectoryOrCreate', async () => {
    const parent = await files.statById(dirId)
    const r = await files.getDirectoryOrCreate('c', parent.data)
    check(r.data.name === 'c', 'name')
  })
  await call('files.ensureDirectoryExists', async () => {
    const id = await files.ensureDirectoryExists('/conformance/a/b')
    check(typeof id === 'string' && id.length > 0, 'id')
  })

  // --- files: content
  const file = await call('files.createFile(string)', async () => {
    const r = await files.createFile('hello conformance\n', { name: 'hello.txt', dirId, contentType: 'text/plain' })
    check(r.data.name === 'hello.txt' && r.data.size === '18', 'size ' + r.data.size)
    return r.data
  })
  const fileId = file && file._id
  await call('files.createFile(Blob)', async () => {
    const blob = new Blob(['blob body'], { type: 'text/plain' })
    const r = await files.createFile(blob, { name: 'blob.txt', dirId })
    check(r.data.size === '9', 'size ' + r.data.size)
  })
  await call('files.createFile(ArrayBuffer)', async () => {
    const buf = new TextEncoder().encode('array buffer').buffer
    const r = await files.createFile(buf, { name: 'ab.bin', dirId })
    check(r.data.size === '12', 'size ' + r.data.size)
  })
  await call('files.updateFile (PUT /files/:id)', async () => {
    const r = await files.updateFile('new content\n', { fileId, name: 'hello.txt', contentType: 'text/plain' })
    check(r.data.size === '12', 'size ' + r.data.size)
  })
  await call('files.fetchFileContentById', async () => {
    const r = await files.fetchFileContentById(fileId)
    const text = await r.text()
    check(text === 'new content\n', 'content ' + JSON.stringify(text))
  })
  await call('files.getDownloadLinkById (POST /files/downloads)', async () => {
    const link = await files.getDownloadLinkById(fileId, 'hello.txt')
    check(link.includes('/files/downloads/'), 'link ' + link)
    const r = await fetch(link)
    check(r.status === 200 && (await r.text()) === 'new content\n', 'download ' + r.status)
  })
  await call('files.getDownloadLinkByPath', async () => {
    const link = await files.getDownloadLinkByPath('/conformance/hello.txt')
    check(link.includes('/files/downloads/'), 'link ' + link)
  })
  await call('files.updateAttributes (PATCH /files/:id)', async () => {
    const r = await files.updateAttributes(fileId, { name: 'renamed.txt', tags: ['conf'] })
    check(r.data.name === 'renamed.txt', 'renamed')
  })
  await call('files.statById(dir, page[limit], page[skip])', async () => {
    const r = await files.statById(dirId, { 'page[limit]': 2, 'page[skip]': 2 })
    check(r.included.length === 2, 'two children on the 2nd page, got ' + r.included.length)
    const next = r.links && r.links.next && new URLSearchParams(r.links.next.split('?')[1])
    check(next && next.get('page[skip]') === '4', 'next skip ' + JSON.stringify(r.links))
  })
  await call('files.statById(dir, page[cursor])', async () => {
    const first = await files.statById(dirId, { 'page[limit]': 2 })
    check(first.included.length === 2 && first.links.next, 'first page')
    const cursor = new URLSearchParams(first.links.next.split('?')[1]).get('page[cursor]')
    const r = await files.statById(dirId, { 'page[limit]': 2, 'page[cursor]': cursor })
    check(r.included.length === 2 && r.included[0]._id !== first.included[0]._id, 'second page')
  })
  await call('files.find (POST /files/_find)', async () => {
    const r = await files.find({ dir_id: dirId, type: 'file' })
    check(r.data.length === 3, 'three files, got ' + r.data.length)
  })
  await call('files.all (POST /files/_all_docs)', async () => {
    const r = await files.all({ keys: [fileId, dirId] })
    check(r.data.length === 2, 'two docs, got ' + r.data.length)
  })
  await call('files.fetchChanges (GET /files/_changes)', async () => {
    const r = await files.fetchChanges({ since: '' }, { includeDocs: true })
    check(r.newLastSeq && r.results.length > 0, 'changes')
  })
  const copy = await call('files.copy (POST /files/:id/copy)', async () => {
    const r = await files.copy(fileId)
    check(r.data.name === 'renamed (copy).txt', 'name ' + r.data.name)
    return r.data
  })
  await call('files.isChildOf', async () => {
    // A directory as the child: the stack sends a path for directories, not for files.
    const sub = await files.statByPath('/conformance/a/b')
    check(await files.isChildOf(sub.data._id, dirId), 'child')
  })

  // --- references
  const album = { _id: 'conformance-album', _type: 'io.cozy.photos.albums' }
  await call('files.addReferencedBy', async () => {
    const r = await files.addReferencedBy({ _id: fileId }, [album])
    check(r.meta && r.meta.count === 1, 'count')
  })
  await call('files.addReferencesTo', async () => {
    await files.addReferencesTo(album, [{ _id: copy && copy._id }, { _id: dirId }])
  })
  await call('files.findReferencedBy (page[limit], cursor)', async () => {
    const r = await files.findReferencedBy(album, { limit: 2 })
    check(r.data.length === 2 && r.next === true && r.meta.count === 3, 'first page ' + JSON.stringify(r.meta))
    // An application takes the cursor from the answer's next link (jsonapi.PaginationCursorToParams).
    const raw = await client.fetchJSON('GET', `/data/${album._type}/${album._id}/relationships/references?page[limit]=2&sort=datetime`)
    const cursor = new URLSearchParams(raw.links.next.split('?')[1]).get('page[cursor]')
    const parsed = JSON.parse(cursor)
    check(Array.isArray(parsed) && parsed.length === 2 && Array.isArray(parsed[0]), 'cursor ' + cursor)
    const r2 = await files.findReferencedBy(album, { limit: 2, cursor: parsed })
    check(r2.data.length === 1 && r2.next === false, 'second page ' + r2.data.length)
  })
  await call('files.removeReferencesTo', async () => {
    await files.removeReferencesTo(album, [{ _id: dirId }])
  })
  await call('files.removeReferencedBy', async () => {
    const r = await files.removeReferencedBy({ _id: fileId }, [album])
    check(r.meta && r.meta.count === 0, 'count')
  })

  // --- trash
  await call('files.destroy (DELETE /files/:id)', async () => {
    const r = await files.destroy({ _id: copy && copy._id })
    check(r.data.trashed === true || r.data.dir_id === TRASH, 'trashed')
  })
  await call('files.restore (POST /files/trash/:id)', async () => {
    const r = await files.restore(copy && copy._id)
    check(r.data.dir_id === dirId, 'restored')
  })
  await call('files.deleteFilePermanently', async () => {
    await files.destroy({ _id: copy && copy._id })
    await files.deleteFilePermanently(copy && copy._id)
  })
  await call('files.emptyTrash (DELETE /files/trash)', async () => {
    await files.destroy({ _id: fileId })
    await files.emptyTrash()
  })

  // --- data
  const created = await call('data.create', async () => {
    const r = await data.create({ name: 'one', n: 1 })
    check(r.data._id && r.data.name === 'one', 'created')
    return r.data
  })
  await call('data.get', async () => {
    const r = await data.get(created._id)
    check(r.data.name === 'one', 'got')
  })
  const updated = await call('data.update', async () => {
    const r = await data.update({ ...created, n: 2 })
    check(r.data.n === 2, 'updated')
    return r.data
  })
  await call('data.create (second)', async () => data.create({ name: 'two', n: 2 }))
  await call('data.all (_normal_docs)', async () => {
    const r = await data.all({ limit: 10 })
    check(r.data.length === 2 && r.meta.count === 2, 'two docs')
  })
  await call('data.all (_all_docs, limit null)', async () => {
    const r = await data.all({ limit: null })
    check(r.data.length === 2, 'two docs, got ' + r.data.length)
  })
  await call('data.getAll (POST _all_docs keys)', async () => {
    const r = await data.getAll([created._id])
    check(r.data.length === 1, 'one doc')
  })
  await call('data.find (index + _find)', async () => {
    const r = await data.find({ n: { $gt: 0 } }, { indexedFields: ['n'], sort: [{ n: 'asc' }] })
    check(r.data.length === 2, 'two docs, got ' + r.data.length)
  })
  await call('data.fetchAllMangoIndexes (_design_docs)', async () => {
    const r = await data.fetchAllMangoIndexes()
    check(Array.isArray(r) && r.length >= 1, 'indexes ' + JSON.stringify(r).slice(0, 100))
  })
  await call('data.updateAll (_bulk_docs)', async () => {
    const r = await data.all({ limit: 10 })
    const out = await data.updateAll(r.data.map(d => ({ ...d, bulk: true })))
    check(out.length === 2 && out.every(o => o.ok), 'bulk ' + JSON.stringify(out).slice(0, 200))
  })
  await call('data.fetchChanges (_changes)', async () => {
    const r = await data.fetchChanges({ since: '' }, { includeDocs: true })
    check(r.newLastSeq && r.documents.length >= 2, 'changes')
  })
  await call('data.destroy', async () => {
    const cur = await data.get(updated._id)
    const r = await data.destroy(cur.data)
    check(r.data._deleted === true, 'deleted')
  })
  await call('data.destroyAll (_bulk_docs)', async () => {
    const r = await data.all({ limit: 10 })
    const out = await data.destroyAll(r.data)
    check(out.length === r.data.length, 'bulk delete')
  })
}

main().then(
  () => {
    process.stdout.write(JSON.stringify({ results }) + '\n')
  },
  err => {
    process.stdout.write(JSON.stringify({ results, fatal: String(err && err.stack) }) + '\n')
  }
)
