import SwiftProtobuf

/// Fills the page of a list answer within a frame: how many items, in order, fit.
public enum AnswerPage {
    /// What a list answer carries besides its items (the frame's id and status, the result's
    /// field headers, a next-page token of at most 512 bytes), kept out of the items' budget.
    public static let envelopeReserve = 640

    /// How many of `items`, from the first, fit in an answer frame of at most `frameLimit`
    /// bytes as the elements of a repeated message field (field numbers 1–15: one tag byte).
    public static func fitting<Item: SwiftProtobuf.Message>(_ items: [Item], frameLimit: Int) throws -> Int {
        var left = frameLimit - envelopeReserve
        for (index, item) in items.enumerated() {
            let size: [UInt8] = try item.serializedBytes()
            left -= 1 + varintSize(size.count) + size.count
            if left < 0 { return index }
        }
        return items.count
    }

    private static func varintSize(_ value: Int) -> Int {
        var value = value, size = 1
        while value >= 0x80 { value >>= 7; size += 1 }
        return size
    }
}
