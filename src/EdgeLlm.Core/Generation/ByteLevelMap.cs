namespace EdgeLlm.Generation;

/// <summary>
/// GPT-2's reversible byte &lt;-&gt; character table for byte-level BPE: printable bytes ('!'..'~', '¡'..'¬',
/// '®'..'ÿ') stand for themselves, the other 68 bytes map in order to U+0100, U+0101, ... so every byte is one
/// visible BMP character and token texts never contain raw spaces or control characters.
/// </summary>
internal static class ByteLevelMap
{
    /// <summary>Byte -> the character standing for it.</summary>
    public static readonly char[] ByteToChar = BuildByteToChar();

    /// <summary>Character -> byte, or -1 (indexed by char code, length covers U+0000..U+0143).</summary>
    public static readonly short[] CharToByte = BuildCharToByte();

    private static bool StandsForItself(int b) => (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);

    private static char[] BuildByteToChar()
    {
        var map = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++) map[b] = StandsForItself(b) ? (char)b : (char)next++;
        return map;
    }

    private static short[] BuildCharToByte()
    {
        var map = new short[256 + 68];
        Array.Fill(map, (short)-1);
        for (int b = 0; b < 256; b++) map[ByteToChar[b]] = (short)b;
        return map;
    }

    /// <summary>The byte a character stands for, or -1 if it is not one of the 256 byte characters.</summary>
    public static int Decode(char c) => c < CharToByte.Length ? CharToByte[c] : -1;
}
