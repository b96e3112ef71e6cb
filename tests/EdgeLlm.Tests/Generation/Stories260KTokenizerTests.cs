using System.Text;
using EdgeLlm.Generation;
using EdgeLlm.Gguf;

namespace EdgeLlm.Tests.Generation;

/// <summary>The bundled stories260K model's 512-piece SentencePiece vocabulary (byte tokens 3..258).</summary>
public class Stories260KTokenizerTests
{
    private static readonly Lazy<Tokenizer> Tok = new(() =>
    {
        using var f = GgufFile.Open(TestPaths.Stories260K);
        return Tokenizer.FromGguf(f);
    });

    [Fact]
    public void VocabularyMetadata()
    {
        var v = Tok.Value.Vocab;
        Assert.IsType<SentencePieceTokenizer>(Tok.Value);
        Assert.Equal(512, v.Count);
        Assert.Equal((1, 2, 0), (v.Bos, v.Eos, v.Unknown));
        Assert.Equal(Vocabulary.None, v.Padding); // stored as 0xFFFFFFFF
        Assert.True(v.AddBos);
        Assert.False(v.AddEos);
        Assert.True(v.AddSpacePrefix);
        Assert.Equal(TokenType.Unknown, v.Type(0));
        Assert.Equal(TokenType.Control, v.Type(1));
        for (int b = 0; b < 256; b++)
        {
            Assert.Equal(TokenType.Byte, v.Type(3 + b));
            Assert.Equal(new[] { (byte)b }, Tok.Value.TokenBytes(3 + b));
        }
        Assert.Equal(new[] { 2 }, v.EndOfGenerationIds);
    }

    // Ids derived by hand from the scores (score = -merge order): "▁t" (-0), "▁a" (-2), "im", "on", "▁u", "▁O",
    // "▁On", "ce", "▁up", "ime" merge first, then "▁time" (-119), "▁Once" (-144), "▁upon" (-148); "▁" (410) has
    // nothing to join (no "▁😊"), and the emoji F0 9F 98 8A falls back to byte tokens 3 + byte.
    private static readonly int[] OnceUponATimeEmoji = [403, 407, 261, 378, 410, 3 + 0xF0, 3 + 0x9F, 3 + 0x98, 3 + 0x8A];

    [Fact]
    public void EncodesOnceUponATimeWithEmojiByteFallback()
    {
        const string text = "Once upon a time 😊";
        int[] ids = Tok.Value.Encode(text, addBos: false);
        Assert.Equal(OnceUponATimeEmoji, ids);

        // Brute-force check independent of the hard-coded ids: every id is in the vocabulary and the pieces
        // concatenate to the escaped text with its dummy prefix.
        var bytes = new List<byte>();
        foreach (int id in ids)
        {
            Assert.InRange(id, 0, 511);
            var t = Tok.Value.Vocab.Type(id);
            Assert.True(t is TokenType.Normal or TokenType.Byte);
            bytes.AddRange(Tok.Value.TokenBytes(id));
        }
        Assert.Equal(" " + text, Encoding.UTF8.GetString(bytes.ToArray()));

        // With BOS.
        Assert.Equal([1, .. OnceUponATimeEmoji], Tok.Value.Encode(text, addBos: true));
    }

    [Fact]
    public void EncodesASentence()
    {
        // Checked against a naive re-implementation (merge the best-scoring adjacent pair, leftmost on ties).
        int[] expected = [403, 407, 261, 378, 432, 383, 286, 261, 376, 298, 315, 421, 395, 317, 426];
        string text = "Once upon a time, there was a little girl named Lily.";
        Assert.Equal(expected, Tok.Value.Encode(text, addBos: false));
        Assert.Equal(text, Tok.Value.Decode(expected));
    }

    [Fact]
    public void DecodesAfterBosWithoutTheDummySpaceAndSkipsControlTokens()
    {
        Assert.Equal("Once upon a time 😊", Tok.Value.Decode([1, .. OnceUponATimeEmoji, 2]));
        Assert.Equal("<s> Once", Tok.Value.Decode([1, 403], renderSpecial: true));
    }

    [Fact]
    public void StreamingDecoderHoldsBackASplitCharacter()
    {
        var d = Tok.Value.CreateDecoder();
        Assert.Equal("", d.Append(1));             // BOS prints nothing
        Assert.Equal("Once", d.Append(403));        // leading space of the first piece dropped
        Assert.Equal(" upon", d.Append(407));
        Assert.Equal(" ", d.Append(410));
        Assert.Equal("", d.Append(3 + 0xF0));
        Assert.Equal("", d.Append(3 + 0x9F));
        Assert.Equal("", d.Append(3 + 0x98));
        Assert.Equal(3, d.PendingBytes);
        Assert.Equal("😊", d.Append(3 + 0x8A));
        Assert.Equal(0, d.PendingBytes);
        Assert.Equal("", d.Append(2));

        // A continuation decoder keeps the space.
        var c = Tok.Value.CreateDecoder(stripLeadingSpace: false);
        Assert.Equal(" upon", c.Append(407));
    }

    [Fact]
    public void StreamingDecoderReplacesInvalidBytesAndFlushesUnfinishedOnes()
    {
        var d = Tok.Value.CreateDecoder();
        Assert.Equal("\uFFFDA", d.Append(3 + 0x80) + d.Append(3 + 0x41)); // lone continuation byte, then 'A'
        Assert.Equal("", d.Append(3 + 0xE2));
        Assert.Equal("\uFFFD", d.Flush());                                   // cut-off 3-byte character
        Assert.Equal("", d.Flush());
    }

    [Fact]
    public void StreamingDecoderIntoASpanAsksForMoreRoomWithoutConsuming()
    {
        var d = Tok.Value.CreateDecoder();
        Span<char> small = stackalloc char[2];
        Assert.Equal(-4, d.Append(403, small)); // "Once" needs 4 chars
        Span<char> big = stackalloc char[16];
        int n = d.Append(403, big);
        Assert.Equal("Once", big[..n].ToString());
    }

    [Fact]
    public void ControlTokenTextIsMatchedOnlyWithParseSpecial()
    {
        int[] special = Tok.Value.Encode("<s>Once", addBos: false, parseSpecial: true);
        Assert.Equal(new[] { 1, 403 }, special); // the text after a special token gets the dummy prefix again
        int[] plain = Tok.Value.Encode("<s>Once", addBos: false);
        Assert.DoesNotContain(1, plain);
        Assert.Equal("<s>Once", Tok.Value.Decode(plain));
    }

    [Fact]
    public void EmptyTextGivesNoTokensOrJustBos()
    {
        Assert.Empty(Tok.Value.Encode("", addBos: false));
        Assert.Equal(new[] { 1 }, Tok.Value.Encode("", addBos: true));
    }
}
