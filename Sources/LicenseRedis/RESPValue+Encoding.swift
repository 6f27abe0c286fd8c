import NIOCore

extension RESPValue {
    /// Writes the value in RESP: RESP2 syntax for the RESP2 types, RESP3 syntax for the others.
    ///
    /// `RESPDecoder` reads back exactly what this writes, which the decoder tests and the fuzz
    /// target use as a round-trip check. (A RESP3 verbatim string is written as a bulk string,
    /// because `RESPValue` does not keep its format.)
    public func encode(into buffer: inout ByteBuffer) {
        switch self {
        case .simpleString(let text):
            buffer.writeStaticString("+")
            buffer.writeString(text)
            buffer.writeStaticString("\r\n")
        case .error(let text) where text.utf8.contains(where: { $0 == 13 || $0 == 10 }):
            // Only a blob error can carry a line break.
            buffer.writeString("!\(text.utf8.count)\r\n")
            buffer.writeString(text)
            buffer.writeStaticString("\r\n")
        case .error(let text):
            buffer.writeStaticString("-")
            buffer.writeString(text)
            buffer.writeStaticString("\r\n")
        case .integer(let value):
            buffer.writeString(":\(value)\r\n")
        case .bulkString(let bytes):
            buffer.writeString("$\(bytes.count)\r\n")
            buffer.writeBytes(bytes)
            buffer.writeStaticString("\r\n")
        case .null:
            buffer.writeStaticString("_\r\n")
        case .array(let elements):
            Self.encode(elements, type: "*", into: &buffer)
        case .set(let elements):
            Self.encode(elements, type: "~", into: &buffer)
        case .push(let elements):
            Self.encode(elements, type: ">", into: &buffer)
        case .boolean(let value):
            buffer.writeStaticString(value ? "#t\r\n" : "#f\r\n")
        case .double(let value):
            let text = value.isNaN ? "nan" : value == .infinity ? "inf" : value == -.infinity ? "-inf" : "\(value)"
            buffer.writeString(",\(text)\r\n")
        case .bigNumber(let digits):
            buffer.writeString("(\(digits)\r\n")
        case .map(let entries):
            buffer.writeString("%\(entries.count)\r\n")
            for entry in entries {
                entry.key.encode(into: &buffer)
                entry.value.encode(into: &buffer)
            }
        }
    }

    private static func encode(_ elements: [RESPValue], type: String, into buffer: inout ByteBuffer) {
        buffer.writeString("\(type)\(elements.count)\r\n")
        for element in elements { element.encode(into: &buffer) }
    }
}
