import Foundation
import Hummingbird
import MultipartKit
import NIOCore

/// Uploads on their way to the scorer: a multipart body is read up to the size limit, every file part is
/// checked to be DICOM or JPEG by its content, and written to a private folder (0700, files 0600) under a
/// number, never under the name the client sent: no client string ever becomes a path. The folder of a
/// request is removed once its slices are scored; leftovers of a crash are removed at start.
struct UploadStore: Sendable {
    let parent: String
    let maxBytes: Int

    struct Batch: Sendable {
        let folder: String
        let files: [(path: String, name: String)]
        let bytes: Int
        func remove() { try? FileManager.default.removeItem(atPath: folder) }
    }

    func prepare() throws {
        let fm = FileManager.default
        if fm.fileExists(atPath: parent) {
            for leftover in (try? fm.contentsOfDirectory(atPath: parent)) ?? [] { try? fm.removeItem(atPath: parent + "/" + leftover) }
        }
        try fm.createDirectory(atPath: parent, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        chmod(parent, 0o700)
    }

    func receive(_ request: Request) async throws -> Batch {
        guard let type = request.headers[.contentType], type.lowercased().hasPrefix("multipart/form-data"),
              let boundary = Self.boundary(type) else {
            throw ConsoleError(status: .unsupportedMediaType,
                               message: "send multipart/form-data with one or more DICOM or JPEG files (got \(request.headers[.contentType] ?? "no content type"))")
        }
        if let length = request.headers[.contentLength].flatMap(Int.init), length > maxBytes {
            throw ConsoleError(status: .contentTooLarge, message: "upload of \(length) bytes is larger than \(maxBytes >> 20) MB (max_upload_mb)")
        }
        let body: ByteBuffer
        do {
            body = try await request.body.collect(upTo: maxBytes)
        } catch is NIOTooManyBytesError {
            throw ConsoleError(status: .contentTooLarge, message: "upload larger than \(maxBytes >> 20) MB (max_upload_mb)")
        }
        let parts = try Self.parts(body, boundary: boundary)
        let files = parts.filter { $0.filename != nil && !($0.filename!.isEmpty && $0.bytes.isEmpty) }
        guard !files.isEmpty else {
            throw ConsoleError(status: .badRequest, message: "no file in the upload (choose one or more DICOM or JPEG slices)")
        }
        var kinds: [String] = []
        for f in files {
            guard let kind = Self.kind(f.bytes) else {
                throw ConsoleError(status: .unsupportedMediaType,
                                   message: "\(Self.displayName(f.filename ?? "")) is neither DICOM nor JPEG (only DICOM or JPEG slices are accepted)")
            }
            kinds.append(kind)
        }
        try prepareIfMissing()
        let folder = parent + "/" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: false, attributes: [.posixPermissions: 0o700])
        var written: [(path: String, name: String)] = []
        do {
            for (i, f) in files.enumerated() {
                let path = "\(folder)/\(i).\(kinds[i])"
                guard FileManager.default.createFile(atPath: path, contents: Data(f.bytes), attributes: [.posixPermissions: 0o600]) else {
                    throw ConsoleError(status: .init(code: 507, reasonPhrase: "Insufficient Storage"), message: "cannot store the upload for scoring (disk full?)")
                }
                written.append((path, Self.displayName(f.filename ?? "")))
            }
        } catch {
            try? FileManager.default.removeItem(atPath: folder)
            throw error
        }
        return Batch(folder: folder, files: written, bytes: body.readableBytes)
    }

    private func prepareIfMissing() throws {
        if !FileManager.default.fileExists(atPath: parent) { try prepare() }
    }

    struct Part {
        var name: String?
        var filename: String?
        var bytes: [UInt8] = []
    }

    static func boundary(_ contentType: String) -> String? {
        for param in contentType.split(separator: ";").dropFirst() {
            let kv = param.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if kv.count == 2, kv[0].lowercased() == "boundary" {
                let b = kv[1].trimmingCharacters(in: CharacterSet(charactersIn: "\""))
                return b.isEmpty || b.count > 200 ? nil : b
            }
        }
        return nil
    }

    /// The parts of a multipart/form-data body (MultipartKit's parser).
    static func parts(_ body: ByteBuffer, boundary: String) throws -> [Part] {
        let parser = MultipartParser(boundary: boundary)
        var parts: [Part] = []
        var current = Part()
        parser.onHeader = { name, value in
            guard name.lowercased() == "content-disposition" else { return }
            current.name = parameter("name", in: value)
            current.filename = parameter("filename", in: value)
        }
        parser.onBody = { buffer in current.bytes += buffer.readBytes(length: buffer.readableBytes) ?? [] }
        parser.onPartComplete = {
            parts.append(current)
            current = Part()
        }
        do {
            try parser.execute(body)
        } catch {
            throw ConsoleError(status: .badRequest, message: "the multipart body cannot be read (\(error))")
        }
        return parts
    }

    static func parameter(_ key: String, in header: String) -> String? {
        for item in header.split(separator: ";").dropFirst() {
            let kv = item.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
            if kv.count == 2, kv[0].lowercased() == key { return kv[1].trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
            if kv.count == 1, kv[0].lowercased() == key { return "" }
        }
        return nil
    }

    /// "dcm" or "jpg" by content: JPEG's FF D8 FF; DICOM's "DICM" after the 128-byte preamble, or a bare
    /// dataset that starts with a group 0002 or 0008 element (little endian). DCMTK decides the rest.
    static func kind(_ b: [UInt8]) -> String? {
        if b.count >= 3, b[0] == 0xFF, b[1] == 0xD8, b[2] == 0xFF { return "jpg" }
        if b.count >= 132, b[128] == 0x44, b[129] == 0x49, b[130] == 0x43, b[131] == 0x4D { return "dcm" }
        if b.count >= 8, (b[0] == 0x02 || b[0] == 0x08), b[1] == 0x00 { return "dcm" }
        return nil
    }

    /// The client's file name for display: its last path component, printable characters only, at most 120.
    static func displayName(_ name: String) -> String {
        let last = name.split(whereSeparator: { $0 == "/" || $0 == "\\" }).last.map(String.init) ?? ""
        let clean = String(last.unicodeScalars.filter { !CharacterSet.controlCharacters.contains($0) }.prefix(120).map(Character.init))
        return clean.isEmpty ? "upload" : clean
    }
}
