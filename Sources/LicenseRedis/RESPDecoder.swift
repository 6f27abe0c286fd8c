import NIOCore

/// Decodes Redis replies (RESP2, and every RESP3 type) from a byte stream, one reply per call.
///
/// A single-step decoder: when the buffer holds only part of a reply it leaves the reader index
/// where it was and returns `nil`, so the next call starts the reply again with more bytes.
/// Everything the peer announces is checked against `Limits` before it is trusted: a bulk length,
/// an element count, the nesting depth, the length of a line, and the bytes a reply may take in
/// all while it is incomplete. A stream that breaks the grammar or a limit throws
/// `RedisClientError` with code `.protocolError`; the connection must then be closed, because the
/// stream can no longer be matched to its commands.
///
/// RESP3 attributes (`|`) are read and dropped; the value that follows them is returned.
public struct RESPDecoder: NIOSingleStepByteToMessageDecoder {
    public typealias InboundOut = RESPValue

    /// The caps on what one reply may announce or take.
    public struct Limits: Sendable, Hashable {
        /// The longest bulk string, blob error or verbatim string. Default 16 MiB.
        public var maxBulkBytes: Int
        /// The most elements one array, set or push may hold, and the most entries of a map or
        /// attribute. Default 1,048,576.
        public var maxElements: Int
        /// How deeply aggregates may nest. Default 32 (`CLUSTER SLOTS` needs 3).
        public var maxDepth: Int
        /// The longest simple string, simple error, number or length line. Default 64 KiB.
        public var maxLineBytes: Int
        /// The most bytes one reply may take, complete or still arriving. Default 64 MiB.
        public var maxReplyBytes: Int

        public init(maxBulkBytes: Int = 16 << 20, maxElements: Int = 1 << 20, maxDepth: Int = 32, maxLineBytes: Int = 64 << 10, maxReplyBytes: Int = 64 << 20) {
            self.maxBulkBytes = maxBulkBytes
            self.maxElements = maxElements
            self.maxDepth = maxDepth
            self.maxLineBytes = maxLineBytes
            self.maxReplyBytes = maxReplyBytes
        }
    }

    public let limits: Limits

    public init(limits: Limits = Limits()) {
        self.limits = limits
    }

    public mutating func decode(buffer: inout ByteBuffer) throws -> RESPValue? {
        let limits = self.limits
        let parsed: (value: RESPValue, consumed: Int)? = try buffer.withUnsafeReadableBytes { bytes in
            var parser = RESPParser(bytes: bytes, limits: limits)
            guard let value = try parser.value(depth: 0) else { return nil }
            return (value, parser.index)
        }
        guard let parsed else {
            if buffer.readableBytes > limits.maxReplyBytes {
                throw RedisClientError(.protocolError, "a Redis reply exceeded \(limits.maxReplyBytes) bytes")
            }
            return nil
        }
        if parsed.consumed > limits.maxReplyBytes {
            throw RedisClientError(.protocolError, "a Redis reply exceeded \(limits.maxReplyBytes) bytes")
        }
        buffer.moveReaderIndex(forwardBy: parsed.consumed)
        return parsed.value
    }

    public mutating func decodeLast(buffer: inout ByteBuffer, seenEOF: Bool) throws -> RESPValue? {
        try decode(buffer: &buffer)
    }
}

/// Reads one RESP value from the start of a byte range. `nil` means "not all of it is here yet";
/// a violation of the grammar or of a limit throws.
struct RESPParser {
    let bytes: UnsafeRawBufferPointer
    let limits: RESPDecoder.Limits
    private(set) var index = 0

    init(bytes: UnsafeRawBufferPointer, limits: RESPDecoder.Limits) {
        self.bytes = bytes
        self.limits = limits
    }

    private static let cr = UInt8(ascii: "\r")
    private static let lf = UInt8(ascii: "\n")

    mutating func value(depth: Int) throws -> RESPValue? {
        guard index < bytes.count else { return nil }
        let type = bytes[index]
        index += 1
        switch type {
        case UInt8(ascii: "+"):
            return try line().map { .simpleString(text($0)) }
        case UInt8(ascii: "-"):
            return try line().map { .error(text($0)) }
        case UInt8(ascii: ":"):
            return try line().map { .integer(try integer($0)) }
        case UInt8(ascii: "$"):
            return try blob().map { $0.map { .bulkString(Array(bytes[$0])) } ?? .null }
        case UInt8(ascii: "!"):
            guard let blob = try blob() else { return nil }
            guard let range = blob else { throw violation("a blob error had a null length") }
            return .error(text(range))
        case UInt8(ascii: "="):
            guard let blob = try blob() else { return nil }
            guard let range = blob, range.count >= 4, bytes[range.lowerBound + 3] == UInt8(ascii: ":") else {
                throw violation("a verbatim string had no format prefix")
            }
            return .bulkString(Array(bytes[(range.lowerBound + 4)..<range.upperBound]))
        case UInt8(ascii: "*"):
            return try aggregate(depth: depth).map { $0.map { .array($0) } ?? .null }
        case UInt8(ascii: "~"):
            return try aggregate(depth: depth).map { $0.map { .set($0) } ?? .null }
        case UInt8(ascii: ">"):
            return try aggregate(depth: depth).map { $0.map { .push($0) } ?? .null }
        case UInt8(ascii: "%"):
            guard let entries = try entries(depth: depth) else { return nil }
            return .map(entries)
        case UInt8(ascii: "|"):
            // An attribute describes the reply that follows it; we have no use for it.
            guard try entries(depth: depth) != nil else { return nil }
            return try value(depth: depth + 1)
        case UInt8(ascii: "_"):
            guard let range = try line() else { return nil }
            guard range.isEmpty else { throw violation("a null carried data") }
            return .null
        case UInt8(ascii: "#"):
            guard let range = try line() else { return nil }
            guard range.count == 1 else { throw violation("a boolean was not t or f") }
            switch bytes[range.lowerBound] {
            case UInt8(ascii: "t"): return .boolean(true)
            case UInt8(ascii: "f"): return .boolean(false)
            default: throw violation("a boolean was not t or f")
            }
        case UInt8(ascii: ","):
            guard let range = try line() else { return nil }
            guard !range.isEmpty, let value = Double(text(range)) else { throw violation("a double was not a number") }
            return .double(value)
        case UInt8(ascii: "("):
            guard let range = try line() else { return nil }
            let digits = text(range)
            let body = digits.first == "-" || digits.first == "+" ? digits.dropFirst() : Substring(digits)
            guard !body.isEmpty, body.utf8.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) else {
                throw violation("a big number was not decimal digits")
            }
            return .bigNumber(digits)
        default:
            throw violation("a reply began with an unknown type byte \(type)")
        }
    }

    /// The bytes up to the next CRLF, which is consumed. A CR must be followed by LF.
    private mutating func line() throws -> Range<Int>? {
        let start = index
        let end = min(bytes.count, start + limits.maxLineBytes + 1)
        var i = start
        while i < end {
            if bytes[i] == Self.cr {
                guard i + 1 < bytes.count else { return nil }
                guard bytes[i + 1] == Self.lf else { throw violation("a line's CR was not followed by LF") }
                index = i + 2
                return start..<i
            }
            i += 1
        }
        if end - start > limits.maxLineBytes { throw violation("a line exceeded \(limits.maxLineBytes) bytes") }
        return nil
    }

    /// A length-prefixed payload: `nil` if incomplete, `.some(nil)` for the RESP2 null length -1.
    private mutating func blob() throws -> Range<Int>?? {
        guard let header = try line() else { return nil }
        let length = try integer(header)
        if length == -1 { return .some(nil) }
        guard length >= 0 else { throw violation("a negative length \(length)") }
        guard length <= limits.maxBulkBytes else { throw violation("a bulk string of \(length) bytes exceeds \(limits.maxBulkBytes)") }
        let count = Int(length)
        guard bytes.count - index >= count + 2 else { return nil }
        let range = index..<(index + count)
        guard bytes[index + count] == Self.cr, bytes[index + count + 1] == Self.lf else {
            throw violation("a bulk string was not followed by CRLF")
        }
        index += count + 2
        return .some(range)
    }

    /// The length line of an aggregate, checked; -1 (the RESP2 null array) is `.some(nil)`.
    private mutating func count(depth: Int, perElement: Int) throws -> Int?? {
        guard depth < limits.maxDepth else { throw violation("replies nested deeper than \(limits.maxDepth)") }
        guard let header = try line() else { return nil }
        let count = try integer(header)
        if count == -1 { return .some(nil) }
        guard count >= 0 else { throw violation("a negative element count \(count)") }
        guard count <= limits.maxElements / perElement else { throw violation("an aggregate of \(count) elements exceeds \(limits.maxElements)") }
        return .some(Int(count))
    }

    private mutating func aggregate(depth: Int) throws -> [RESPValue]?? {
        guard let announced = try count(depth: depth, perElement: 1) else { return nil }
        guard let count = announced else { return .some(nil) }
        var elements: [RESPValue] = []
        // Every element takes at least three bytes, so this never reserves more than arrived.
        elements.reserveCapacity(min(count, (bytes.count - index) / 3))
        for _ in 0..<count {
            guard let element = try value(depth: depth + 1) else { return nil }
            elements.append(element)
        }
        return .some(elements)
    }

    private mutating func entries(depth: Int) throws -> [RESPMapEntry]? {
        guard let announced = try count(depth: depth, perElement: 2) else { return nil }
        guard let count = announced else { throw violation("a map had a null length") }
        var entries: [RESPMapEntry] = []
        entries.reserveCapacity(min(count, (bytes.count - index) / 6))
        for _ in 0..<count {
            guard let key = try value(depth: depth + 1), let value = try value(depth: depth + 1) else { return nil }
            entries.append(RESPMapEntry(key: key, value: value))
        }
        return entries
    }

    /// A signed decimal integer that fits in 64 bits.
    private func integer(_ range: Range<Int>) throws -> Int64 {
        var i = range.lowerBound
        var negative = false
        if i < range.upperBound, bytes[i] == UInt8(ascii: "-") || bytes[i] == UInt8(ascii: "+") {
            negative = bytes[i] == UInt8(ascii: "-")
            i += 1
        }
        guard i < range.upperBound else { throw violation("an integer had no digits") }
        var value: Int64 = 0
        while i < range.upperBound {
            let digit = bytes[i] &- UInt8(ascii: "0")
            guard digit < 10 else { throw violation("an integer had a non-digit") }
            let (times, overflow1) = value.multipliedReportingOverflow(by: 10)
            let (next, overflow2) = negative ? times.subtractingReportingOverflow(Int64(digit)) : times.addingReportingOverflow(Int64(digit))
            guard !overflow1, !overflow2 else { throw violation("an integer did not fit in 64 bits") }
            value = next
            i += 1
        }
        return value
    }

    private func text(_ range: Range<Int>) -> String {
        String(decoding: UnsafeRawBufferPointer(rebasing: bytes[range]), as: UTF8.self)
    }

    private func violation(_ message: String) -> RedisClientError {
        RedisClientError(.protocolError, "invalid RESP: \(message)")
    }
}
