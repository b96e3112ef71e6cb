namespace EdgeLlm.Fuzz;

/// <summary>
/// Seeded byte mutations of a seed input, the kinds that break binary parsers: bit flips, boundary bytes, 32- and
/// 64-bit boundary integers written over a random offset (most often in the first 4 KiB, where headers, counts and
/// offsets live), truncation, a repeated or deleted span, and a few of these stacked.
/// </summary>
public sealed class Mutator(int seed)
{
    private readonly Random _rng = new(seed);

    private static readonly ulong[] Boundary =
        [0, 1, 2, 7, 8, 31, 32, 255, 256, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff, 0x7fffffff, 0x80000000, 0xffffffff,
         0x100000000, 0x7fffffffffffffff, 0x8000000000000000, 0xffffffffffffffff, 50_000_000, 1 << 20, 1 << 30];

    public byte[] Mutate(byte[] seedBytes)
    {
        var b = (byte[])seedBytes.Clone();
        int rounds = 1 + _rng.Next(3);
        for (int r = 0; r < rounds && b.Length > 0; r++) b = MutateOnce(b);
        return b;
    }

    private int Offset(int length) => _rng.Next(4) == 0 || length <= 4096 ? _rng.Next(length) : _rng.Next(Math.Min(length, 4096));

    private byte[] MutateOnce(byte[] b)
    {
        switch (_rng.Next(8))
        {
            case 0:
                b[Offset(b.Length)] ^= (byte)(1 << _rng.Next(8));
                return b;
            case 1:
                b[Offset(b.Length)] = (byte)Boundary[_rng.Next(Boundary.Length)];
                return b;
            case 2 when b.Length >= 4:
            {
                int at = Math.Min(Offset(b.Length), b.Length - 4);
                BitConverter.TryWriteBytes(b.AsSpan(at), (uint)Boundary[_rng.Next(Boundary.Length)]);
                return b;
            }
            case 3 when b.Length >= 8:
            {
                int at = Math.Min(Offset(b.Length), b.Length - 8);
                BitConverter.TryWriteBytes(b.AsSpan(at), Boundary[_rng.Next(Boundary.Length)]);
                return b;
            }
            case 4:
                return b[.._rng.Next(b.Length)];
            case 5:
            {
                int at = Offset(b.Length), len = Math.Min(b.Length - at, 1 + _rng.Next(64));
                return [.. b[..(at + len)], .. b[at..(at + len)], .. b[(at + len)..]];
            }
            case 6:
            {
                int at = Offset(b.Length), len = Math.Min(b.Length - at, 1 + _rng.Next(64));
                return [.. b[..at], .. b[(at + len)..]];
            }
            default:
            {
                // a small counted value (1..4 bytes) somewhere early set to random bits
                int at = Offset(b.Length);
                for (int i = at; i < Math.Min(b.Length, at + 1 + _rng.Next(4)); i++) b[i] = (byte)_rng.Next(256);
                return b;
            }
        }
    }

    /// <summary>Mutations of JSON text that stay printable: drop or repeat a span, swap a value for a hostile one.</summary>
    public string MutateJson(string json)
    {
        string[] hostile = ["null", "-1", "0", "1e309", "99999999999999999999", "\"\"", "[]", "{}", "true", "\"\\u0000\"",
            "[1,2,3]", "2147483648", "-2147483649", "\"" + new string('x', 5000) + "\"", "[{\"type\":\"image_url\"}]", "NaN"];
        var s = json;
        int rounds = 1 + _rng.Next(3);
        for (int r = 0; r < rounds && s.Length > 0; r++)
        {
            int at = _rng.Next(s.Length);
            switch (_rng.Next(4))
            {
                case 0: s = s[..at] + s[Math.Min(s.Length, at + 1 + _rng.Next(16))..]; break;
                case 1: s = s[..at] + hostile[_rng.Next(hostile.Length)] + s[at..]; break;
                case 2:
                {
                    // replace the value after a colon
                    int colon = s.IndexOf(':', at);
                    if (colon < 0) break;
                    int end = s.IndexOfAny([',', '}', ']'], colon + 1);
                    if (end < 0) break;
                    s = s[..(colon + 1)] + hostile[_rng.Next(hostile.Length)] + s[end..];
                    break;
                }
                default: s = s[..at] + s[at..Math.Min(s.Length, at + 1 + _rng.Next(32))] + s[at..]; break;
            }
        }
        return s;
    }
}
