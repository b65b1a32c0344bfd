package recipes

import (
	"fmt"
	"sort"
	"strings"
)

// FieldError is one problem in a recipe, at a position and a field path.
type FieldError struct {
	File    string `json:"file"`
	Line    int    `json:"line"`
	Col     int    `json:"col"`
	Field   string `json:"field"`
	Message string `json:"message"`
}

func (e FieldError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d:%d", e.Line, e.Col)
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// ErrorList is every problem found in one recipe. It is an error when
// non-empty; Load returns all of them so that one run shows everything.
type ErrorList struct {
	File   string
	Errors []FieldError
}

func (l *ErrorList) add(p Pos, field, msg string) {
	l.Errors = append(l.Errors, FieldError{File: l.File, Line: p.Line, Col: p.Col, Field: field, Message: msg})
}

func (l *ErrorList) Error() string {
	msgs := make([]string, len(l.Errors))
	for i, e := range l.Errors {
		msgs[i] = e.Error()
	}
	return strings.Join(msgs, "\n")
}

func (l *ErrorList) sort() {
	sort.SliceStable(l.Errors, func(i, j int) bool {
		a, b := l.Errors[i], l.Errors[j]
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}

func (l *ErrorList) errOrNil() error {
	if len(l.Errors) == 0 {
		return nil
	}
	l.sort()
	return l
}
