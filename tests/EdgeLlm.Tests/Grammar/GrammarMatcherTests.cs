using System.Text;
using EdgeLlm.Generation;

namespace EdgeLlm.Tests.Grammar;

/// <summary>The schema compiler and the byte automaton against hand-checked accepted and refused strings.</summary>
public class GrammarMatcherTests
{
    private static bool Full(EdgeLlm.Generation.Grammar g, string s) => GrammarMatcher.Matches(g, Encoding.UTF8.GetBytes(s));
    private static bool Prefix(EdgeLlm.Generation.Grammar g, string s) => GrammarMatcher.IsLivePrefix(g, Encoding.UTF8.GetBytes(s));
    private static EdgeLlm.Generation.Grammar S(string schema) => JsonSchemaCompiler.Compile(schema);

    [Theory]
    [InlineData("{}")]
    [InlineData("{ }")]
    [InlineData("{\"a\":1}")]
    [InlineData("{\"a\": [1, -2.5e+3, \"x\\u00e9\\n\", true, false, null, {}], \"b\": {\"c\": []}}")]
    [InlineData("{\n  \"a\": \"caf\u00e9 \u4e2d \U0001F600\"\n}")]
    [InlineData("{\"\":0}")]
    [InlineData("{\"a\":-0}")]
    public void Json_object_accepts(string text) => Assert.True(Full(EdgeLlm.Generation.Grammar.JsonObject, text), text);

    [Theory]
    [InlineData("[]")]                // not an object
    [InlineData("{\"a\":}")]
    [InlineData("{\"a\":1,}")]        // trailing comma
    [InlineData("{'a':1}")]           // single quotes
    [InlineData("{\"a\":01}")]        // leading zero
    [InlineData("{\"a\":1.}")]        // empty fraction
    [InlineData("{\"a\":\"\\x\"}")]   // unknown escape
    [InlineData("{\"a\":\"\\ud800\"}")] // lone surrogate escape
    [InlineData("{\"a\":\"\t\"}")]    // raw control character
    [InlineData(" {}")]               // whitespace around the root
    [InlineData("{} ")]
    [InlineData("{\"a\":tru}")]
    public void Json_object_refuses(string text) => Assert.False(Full(EdgeLlm.Generation.Grammar.JsonObject, text), text);

    [Fact]
    public void Invalid_utf8_is_refused_byte_by_byte()
    {
        var g = EdgeLlm.Generation.Grammar.JsonObject;
        byte[] ok = [(byte)'{', (byte)'"', 0xC3, 0xA9, (byte)'"', (byte)':', (byte)'1', (byte)'}'];
        Assert.True(GrammarMatcher.Matches(g, ok));
        Assert.False(GrammarMatcher.IsLivePrefix(g, [(byte)'{', (byte)'"', 0xC0, 0x80]));       // overlong
        Assert.False(GrammarMatcher.IsLivePrefix(g, [(byte)'{', (byte)'"', 0xED, 0xA0, 0x80])); // UTF-8 surrogate
        Assert.False(GrammarMatcher.IsLivePrefix(g, [(byte)'{', (byte)'"', 0xC3, (byte)'"']));  // truncated sequence
        Assert.True(GrammarMatcher.IsLivePrefix(g, [(byte)'{', (byte)'"', 0xF0, 0x9F]));        // a 4-byte char in progress
        Assert.False(GrammarMatcher.IsLivePrefix(g, [(byte)'{', (byte)'"', 0xF5]));             // beyond U+10FFFF
    }

    [Fact]
    public void Object_with_required_and_optional_properties_in_order()
    {
        var g = S("""{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"},"c":{"type":"boolean"}},"required":["b"]}""");
        Assert.True(Full(g, "{\"b\":\"x\"}"));
        Assert.True(Full(g, "{\"a\":1,\"b\":\"x\"}"));
        Assert.True(Full(g, "{\"a\": 1, \"b\": \"x\", \"c\": true}"));
        Assert.True(Full(g, "{\"b\":\"\",\"c\":false}"));
        Assert.False(Full(g, "{}"));                       // b is required
        Assert.False(Full(g, "{\"a\":1}"));
        Assert.False(Full(g, "{\"b\":\"x\",\"a\":1}"));     // declared order
        Assert.False(Full(g, "{\"b\":\"x\",\"d\":1}"));     // undeclared
        Assert.False(Full(g, "{\"a\":1.5,\"b\":\"x\"}"));   // integer
        Assert.False(Full(g, "{,\"b\":\"x\"}"));
        Assert.True(Prefix(g, "{\"b\":\"x\",\"c"));
        Assert.False(Prefix(g, "{\"d"));
    }

    [Fact]
    public void Arrays_count_their_items()
    {
        var g = S("""{"type":"array","items":{"type":"integer"},"minItems":2,"maxItems":3}""");
        Assert.False(Full(g, "[]"));
        Assert.False(Full(g, "[1]"));
        Assert.True(Full(g, "[1,2]"));
        Assert.True(Full(g, "[ 1, 2, 3 ]"));
        Assert.False(Full(g, "[1,2,3,4]"));
        Assert.False(Prefix(g, "[1,2,3,"));
        Assert.False(Full(g, "[1,\"a\"]"));
        var empty = S("""{"type":"array","maxItems":0}""");
        Assert.True(Full(empty, "[]"));
        Assert.False(Full(empty, "[1]"));
    }

    [Fact]
    public void Strings_count_characters_not_bytes()
    {
        var g = S("""{"type":"string","minLength":2,"maxLength":3}""");
        Assert.False(Full(g, "\"a\""));
        Assert.True(Full(g, "\"ab\""));
        Assert.True(Full(g, "\"\u00e9\u4e2d\U0001F600\""));  // 3 characters, 9 bytes
        Assert.True(Full(g, "\"a\\n\\u0041\""));             // escapes count as one
        Assert.False(Full(g, "\"abcd\""));
    }

    [Fact]
    public void Enum_const_anyOf_and_type_lists()
    {
        var e = S("""{"enum":["red",1,null,{"a":[true]}]}""");
        Assert.True(Full(e, "\"red\""));
        Assert.True(Full(e, "1"));
        Assert.True(Full(e, "null"));
        Assert.True(Full(e, "{\"a\":[true]}"));
        Assert.False(Full(e, "\"blue\""));
        Assert.False(Full(e, "12"));
        var c = S("""{"const":"x"}""");
        Assert.True(Full(c, "\"x\""));
        Assert.False(Full(c, "\"y\""));
        var a = S("""{"anyOf":[{"type":"integer"},{"type":"object","properties":{"k":{"type":"null"}},"required":["k"]},{"type":"object","properties":{"j":{"type":"boolean"}},"required":["j"]}]}""");
        Assert.True(Full(a, "-12"));
        Assert.True(Full(a, "{\"k\":null}"));
        Assert.True(Full(a, "{\"j\":false}"));
        Assert.False(Full(a, "{\"k\":false}"));
        Assert.False(Full(a, "1.5"));
        var t = S("""{"type":["number","null"]}""");
        Assert.True(Full(t, "1.5e-7"));
        Assert.True(Full(t, "null"));
        Assert.False(Full(t, "\"1\""));
    }

    [Fact]
    public void Numbers_are_bounded()
    {
        var i = S("""{"type":"integer"}""");
        Assert.True(Full(i, "1234567890123456"));   // 16 digits
        Assert.False(Full(i, "12345678901234567")); // 17
        var n = S("""{"type":"number"}""");
        Assert.True(Full(n, "0.5E12"));
        Assert.False(Full(n, "1e123"));             // exponent of at most 2 digits
        Assert.False(Full(n, "+1"));
    }

    [Fact]
    public void Recursive_refs_nest()
    {
        var g = S("""{"$defs":{"t":{"type":"object","properties":{"kids":{"type":"array","items":{"$ref":"#/$defs/t"}}},"required":["kids"]}},"$ref":"#/$defs/t"}""");
        Assert.True(Full(g, "{\"kids\":[]}"));
        Assert.True(Full(g, "{\"kids\":[{\"kids\":[{\"kids\":[]}]},{\"kids\":[]}]}"));
        Assert.False(Full(g, "{\"kids\":[{}]}"));
        var self = S("""{"type":"object","properties":{"next":{"anyOf":[{"$ref":"#"},{"type":"null"}]}},"required":["next"]}""");
        Assert.True(Full(self, "{\"next\":{\"next\":null}}"));
    }

    [Fact]
    public void A_long_generation_keeps_the_state_small()
    {
        // 5000 array items: the arena is compacted and the stacks stay flat (tail calls).
        var g = S("""{"type":"array","items":{"type":"integer"}}""");
        var m = new GrammarMatcher(g);
        Assert.True(m.Accept("["u8));
        for (int i = 0; i < 5000; i++) Assert.True(m.Accept(i == 0 ? "7"u8 : ", 7"u8));
        Assert.True(m.Accept("]"u8));
        Assert.True(m.IsAccepting);
        Assert.False(m.CanContinue);
        Assert.True(m.StackCount <= 2);
    }

    [Fact]
    public void Deep_nesting_survives_compaction()
    {
        // 6000 nested arrays: deep stacks, and more than the 16k nodes after which the arena is compacted.
        var m = new GrammarMatcher(EdgeLlm.Generation.Grammar.JsonObject);
        Assert.True(m.Accept("{\"a\":"u8));
        for (int i = 0; i < 6000; i++) Assert.True(m.Accept("["u8));
        Assert.False(m.Check("}"u8));
        Assert.True(m.Accept("1"u8));
        for (int i = 0; i < 6000; i++)
        {
            Assert.False(m.Check("}"u8)); // an array is open: only ']' (or more items) can close it
            Assert.True(m.Accept("]"u8));
        }
        Assert.False(m.IsAccepting);
        Assert.True(m.Accept("}"u8));
        Assert.True(m.IsAccepting);
        Assert.False(m.CanContinue);
    }

    [Fact]
    public void Check_does_not_change_the_state()
    {
        var m = new GrammarMatcher(EdgeLlm.Generation.Grammar.JsonObject);
        Assert.True(m.Check("{\"a\""u8));
        Assert.False(m.Check("[\"a\""u8));
        Assert.True(m.Accept("{"u8));
        Assert.False(m.Accept("]"u8));   // refused: nothing consumed
        Assert.True(m.Accept("}"u8));
        Assert.True(m.IsAccepting);
        Assert.False(m.CanContinue);
    }

    [Theory]
    [InlineData("""{"type":"string","pattern":"^a"}""", "keyword 'pattern'")]
    [InlineData("""{"$ref":"http://example.com/s.json"}""", "'$ref' 'http://example.com/s.json'")]
    [InlineData("""{"$ref":"#/$defs/missing"}""", "'$ref' '#/$defs/missing'")]
    [InlineData("""{"allOf":[{"type":"string"}]}""", "keyword 'allOf'")]
    [InlineData("""{"type":"integer","minimum":3}""", "keyword 'minimum'")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"string","format":"date","pattern":"x"}}}""", "#/properties/a: keyword 'pattern'")]
    [InlineData("""{"type":"object","properties":{"a":{}},"required":["b"]}""", "'required' names 'b'")]
    [InlineData("""{"type":"date"}""", "unknown type 'date'")]
    [InlineData("""{"$defs":{"a":{"anyOf":[{"$ref":"#/$defs/a"},{"type":"null"}]}},"$ref":"#/$defs/a"}""", "left-recursive")]
    [InlineData("""{"type":"array","items":[{"type":"string"}]}""", "tuple")]
    [InlineData("""{"type":"object",""", "not valid JSON")]
    public void Unsupported_schemas_are_refused_in_one_line(string schema, string expected)
    {
        var e = Assert.Throws<GrammarException>(() => JsonSchemaCompiler.Compile(schema));
        Assert.Contains(expected, e.Message);
        Assert.DoesNotContain('\n', e.Message);
    }

    [Fact]
    public void The_twenty_test_schemas_compile_and_their_examples_pass_the_test_validator()
    {
        // Sanity of the test material itself: each schema compiles, and one hand-written instance per schema
        // is accepted by both the grammar and the independent validator.
        string[] examples =
        [
            "{\"name\":\"Tim\",\"age\":3}", "true", "[1,2]", "\"blue\"", "{\"color\":null}", "{\"tags\":[\"a\",\"bb\"]}", "-0.25",
            "{\"point\":{\"x\":1,\"y\":2.5}}", "\"hi\"", "{\"kind\":\"b\",\"s\":\"ab\"}", "null", "{\"version\":2,\"tags\":[\"x\"],\"ok\":true}",
            "{\"b\":2}", "\"abc\"", "[3,1,2]", "{\"v\":1,\"next\":{\"v\":2,\"next\":null}}", "{\"x\":true,\"y\":false}",
            "{\"title\":\"Dune\",\"year\":1965}", "[]", "{\"items\":[{\"id\":1,\"ok\":true}]}",
        ];
        Assert.Equal(TestSchemas.All.Length, examples.Length);
        for (int i = 0; i < examples.Length; i++)
        {
            var c = TestSchemas.All[i];
            Assert.True(Full(S(c.Schema), examples[i]), c.Name);
            using var schema = System.Text.Json.JsonDocument.Parse(c.Schema);
            using var value = System.Text.Json.JsonDocument.Parse(examples[i]);
            Assert.Null(MiniSchemaValidator.Validate(value.RootElement, schema.RootElement));
        }
    }
}
