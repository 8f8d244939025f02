package graph

import (
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/validator/core"
	"github.com/vektah/gqlparser/v2/validator/rules"
)

// Numbers a client sends that do not fit an Int64 are refused in words,
// never with strconv's text: a variable's value fails while gqlgen binds
// it (the error presenter rewords it), a literal in the query fails
// validation (int64Literals). gqlparser checks Int literals itself.

// int64LiteralsRule names the validation rule, so the error presenter
// knows its errors are the client's input (BAD_USER_INPUT).
const int64LiteralsRule = "Int64LiteralsInRange"

// validationRules are gqlparser's defaults and int64Literals. Without it
// an Int64 literal beyond int64 passes validation (custom scalars are
// not checked) and then panics in gqlgen while it reads the arguments.
func validationRules() *rules.Rules {
	r := rules.NewDefaultRules()
	r.AddRule(int64LiteralsRule, func(observers *core.Events, addError core.AddErrFunc) {
		observers.OnValue(func(_ *core.Walker, v *ast.Value) {
			if v.Kind != ast.IntValue || v.Definition == nil || v.Definition.Name != "Int64" {
				return
			}
			if _, err := strconv.ParseInt(v.Raw, 10, 64); err != nil {
				addError(core.Message("%s", numberProblem("Int64 value", v.Raw, err)), core.At(v.Position))
			}
		})
	})
	return r
}

// numberProblem says in words why text, the value of what, is not an
// int64; err is strconv's.
func numberProblem(what, text string, err error) string {
	const most = 40 // a huge number is shown cut, not whole
	shown := text
	if len(shown) > most {
		shown = shown[:most] + "…"
	}
	switch {
	case errors.Is(err, strconv.ErrRange) && len(text) > 0 && text[0] == '-':
		return fmt.Sprintf("%s %s is too small: at least %d", what, shown, int64(math.MinInt64))
	case errors.Is(err, strconv.ErrRange):
		return fmt.Sprintf("%s %s is too large: at most %d", what, shown, int64(math.MaxInt64))
	default:
		return fmt.Sprintf("%s %q is not a whole number", what, shown)
	}
}
