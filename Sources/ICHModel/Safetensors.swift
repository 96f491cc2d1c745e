import Foundation

/// A tensor read from a `.safetensors` file, converted to Float32 (F32, F16 and BF16 are accepted).
public struct NamedTensor: Sendable, Equatable {
    public var shape: [Int]
    public var values: [Float]

    public init(shape: [Int], values: [Float]) {
        precondition(values.count == shape.reduce(1, *), "values do not fill the shape")
        self.shape = shape
        self.values = values
    }
}

public struct SafetensorsError: Error, Equatable, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The safetensors format (Hugging Face): an 8-byte little-endian header length, a JSON header naming each
/// tensor's dtype, shape and byte range, then the raw little-endian data. What PyTorch's
/// `safetensors.torch.save_file(model.state_dict(), ...)` writes.
public enum Safetensors {
    /// Headers larger than this are refused (real ones are a few tens of KiB).
    static let maxHeaderBytes = 64 << 20

    public struct File: Sendable {
        public var tensors: [String: NamedTensor]
        /// Names whose dtype is not a float type (e.g. `num_batches_tracked`, I64): listed, not converted.
        public var nonFloatTensors: [String: String]
        public var metadata: [String: String]

        public init(tensors: [String: NamedTensor], nonFloatTensors: [String: String] = [:], metadata: [String: String] = [:]) {
            self.tensors = tensors
            self.nonFloatTensors = nonFloatTensors
            self.metadata = metadata
        }
    }

    public static func read(path: String) throws(SafetensorsError) -> File {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path), options: .alwaysMapped)
        } catch {
            throw SafetensorsError("cannot read \(path): \(error.localizedDescription)")
        }
        return try parse(data)
    }

    public static func parse(_ data: Data) throws(SafetensorsError) -> File {
        guard data.count >= 8 else { throw SafetensorsError("file too short for a safetensors header") }
        let headerLength = data.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard headerLength > 1, headerLength <= UInt64(maxHeaderBytes), 8 + headerLength <= UInt64(data.count) else {
            throw SafetensorsError("header length \(headerLength) does not fit a \(data.count)-byte file")
        }
        let headerEnd = 8 + Int(headerLength)
        let json: [String: Any]
        do {
            guard let object = try JSONSerialization.jsonObject(with: data.subdata(in: 8..<headerEnd)) as? [String: Any] else {
                throw SafetensorsError("header is not a JSON object")
            }
            json = object
        } catch let error as SafetensorsError {
            throw error
        } catch {
            throw SafetensorsError("header is not valid JSON")
        }
        let body = data.count - headerEnd
        var file = File(tensors: [:], nonFloatTensors: [:], metadata: [:])
        for (name, value) in json {
            if name == "__metadata__" {
                for (k, v) in value as? [String: Any] ?? [:] { file.metadata[k] = "\(v)" }
                continue
            }
            guard let entry = value as? [String: Any], let dtype = entry["dtype"] as? String,
                  let shape = (entry["shape"] as? [Any])?.compactMap({ ($0 as? NSNumber)?.intValue }),
                  let offsets = (entry["data_offsets"] as? [Any])?.compactMap({ ($0 as? NSNumber)?.intValue }),
                  offsets.count == 2 else {
                throw SafetensorsError("malformed header entry for \(name)")
            }
            guard shape.allSatisfy({ $0 >= 0 }), offsets[0] >= 0, offsets[0] <= offsets[1], offsets[1] <= body else {
                throw SafetensorsError("\(name): byte range \(offsets) outside the \(body)-byte data section")
            }
            let count = shape.reduce(1, *)
            let width: Int
            switch dtype {
            case "F32": width = 4
            case "F16", "BF16": width = 2
            default:
                file.nonFloatTensors[name] = dtype
                continue
            }
            guard offsets[1] - offsets[0] == count * width else {
                throw SafetensorsError("\(name): \(offsets[1] - offsets[0]) bytes for shape \(shape) of \(dtype)")
            }
            let start = headerEnd + offsets[0]
            var values = [Float](repeating: 0, count: count)
            data.withUnsafeBytes { raw in
                let base = raw.baseAddress! + start
                for i in 0..<count {
                    switch dtype {
                    case "F32": values[i] = Float(bitPattern: UInt32(littleEndian: (base + 4 * i).loadUnaligned(as: UInt32.self)))
                    case "F16": values[i] = floatFromHalf(UInt16(littleEndian: (base + 2 * i).loadUnaligned(as: UInt16.self)))
                    default: values[i] = Float(bitPattern: UInt32(UInt16(littleEndian: (base + 2 * i).loadUnaligned(as: UInt16.self))) << 16)
                    }
                }
            }
            file.tensors[name] = NamedTensor(shape: shape, values: values)
        }
        return file
    }

    /// IEEE half to single, exactly (subnormals, infinities and NaN included).
    public static func floatFromHalf(_ h: UInt16) -> Float {
        let sign = UInt32(h & 0x8000) << 16
        let exponent = Int(h >> 10) & 0x1F
        let mantissa = UInt32(h & 0x3FF)
        if exponent == 0 {
            // zero or subnormal: mantissa x 2^-24
            let magnitude = Float(mantissa) * Float(sign: .plus, exponent: -24, significand: 1)
            return sign != 0 ? -magnitude : magnitude
        }
        if exponent == 31 { return Float(bitPattern: sign | 0x7F80_0000 | (mantissa << 13)) }
        return Float(bitPattern: sign | UInt32(exponent - 15 + 127) << 23 | (mantissa << 13))
    }

    /// Writes F32 tensors (names sorted, so the same tensors give the same bytes).
    public static func write(_ tensors: [String: NamedTensor], metadata: [String: String] = [:], to path: String) throws {
        var header: [String: Any] = [:]
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        let names = tensors.keys.sorted()
        for name in names {
            let t = tensors[name]!
            header[name] = ["dtype": "F32", "shape": t.shape, "data_offsets": [offset, offset + 4 * t.values.count]]
            offset += 4 * t.values.count
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }  // keep the data 8-byte aligned, as the reference writer does
        var out = Data()
        out.reserveCapacity(8 + json.count + offset)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { out.append(contentsOf: $0) }
        out.append(json)
        for name in names {
            tensors[name]!.values.withUnsafeBufferPointer { buf in
                for v in buf { withUnsafeBytes(of: v.bitPattern.littleEndian) { out.append(contentsOf: $0) } }
            }
        }
        try out.write(to: URL(fileURLWithPath: path), options: .atomic)
    }
}
