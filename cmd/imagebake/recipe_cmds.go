package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/imagebake/imagebake/internal/buildinfo"
	"github.com/imagebake/imagebake/recipes"
	"github.com/imagebake/imagebake/templates"
)

type validateResult struct {
	File   string               `json:"file"`
	Valid  bool                 `json:"valid"`
	Name   string               `json:"name,omitempty"`
	Hash   string               `json:"hash,omitempty"`
	Errors []recipes.FieldError `json:"errors"`
}

type validateFlags struct {
	out   output
	files []string
}

func (a *app) validateCommand() *cli.Command {
	return &cli.Command{
		Name:      "validate",
		Usage:     "check recipes: every error with file:line:col, the field and what to do",
		ArgsUsage: "RECIPE...",
		Description: "Loads each recipe strictly (unknown keys, wrong types, duplicate keys are errors), validates it,\n" +
			"and renders it to check the cloud-config fits Azure's custom-data limit. Exit 0 when all are valid, 1 otherwise.",
		Flags: []cli.Flag{outputFlag()},
		Action: func(c *cli.Context) error {
			out, err := a.readOutput(c)
			if err != nil {
				return err
			}
			if c.NArg() == 0 {
				return usageErr("validate needs at least one recipe file, e.g. imagebake validate recipes/*.yaml")
			}
			return a.runValidate(validateFlags{out: out, files: c.Args().Slice()})
		},
	}
}

func (a *app) runValidate(f validateFlags) error {
	var results []validateResult
	bad := 0
	for _, path := range f.files {
		res := validateOne(path)
		if !res.Valid {
			bad++
		}
		results = append(results, res)
	}
	err := f.out.result(results, func(w io.Writer) error {
		for _, r := range results {
			if r.Valid {
				fmt.Fprintf(w, "%s: valid (recipe %s, hash %.12s)\n", r.File, r.Name, r.Hash)
				continue
			}
			for _, e := range r.Errors {
				fmt.Fprintln(a.stderr, e.Error())
			}
			fmt.Fprintf(a.stderr, "%s: %d error(s)\n", r.File, len(r.Errors))
		}
		return nil
	})
	if err != nil {
		return err
	}
	if bad > 0 {
		return cli.Exit("", exitFailed)
	}
	return nil
}

func validateOne(path string) validateResult {
	res := validateResult{File: path, Errors: []recipes.FieldError{}}
	r, err := recipes.Load(path)
	if err != nil {
		var list *recipes.ErrorList
		if errors.As(err, &list) {
			res.Errors = list.Errors
		} else {
			// The line starts with the file already: say it once.
			msg := strings.TrimPrefix(err.Error(), "recipe "+path+": ")
			var pe *fs.PathError
			if errors.As(err, &pe) {
				msg = pe.Err.Error()
			}
			res.Errors = []recipes.FieldError{{File: path, Message: msg}}
		}
		return res
	}
	doc, err := templates.Render(r, templates.Options{})
	if err == nil {
		err = templates.CheckTargets(r, doc)
	}
	if err != nil {
		res.Errors = []recipes.FieldError{{File: path, Message: err.Error()}}
		return res
	}
	res.Valid, res.Name, res.Hash = true, r.Name, r.Hash()
	return res
}

// loadRecipe loads the command's one recipe argument, turning validation
// errors into exit code 2 (bad input) with every error listed.
func loadRecipe(c *cli.Context) (*recipes.Recipe, error) {
	if c.NArg() != 1 {
		return nil, usageErr("%s needs exactly one recipe file", c.Command.Name)
	}
	r, err := recipes.Load(c.Args().First())
	if err != nil {
		return nil, cli.Exit(err.Error(), exitUsage)
	}
	return r, nil
}

type renderFlags struct {
	customData bool // gzip+base64, as sent to Azure
}

func (a *app) renderCommand() *cli.Command {
	return &cli.Command{
		Name:      "render",
		Usage:     "print the cloud-config a recipe renders to",
		ArgsUsage: "RECIPE",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "format", Value: "cloud-config", Usage: "cloud-config, or custom-data (gzip+base64, as sent to Azure)", EnvVars: envs("FORMAT")},
		},
		Action: func(c *cli.Context) error {
			format := c.String("format")
			if format != "cloud-config" && format != "custom-data" {
				return usageErr("--format %q: use cloud-config or custom-data", format)
			}
			r, err := loadRecipe(c)
			if err != nil {
				return err
			}
			return a.runRender(r, renderFlags{customData: format == "custom-data"})
		},
	}
}

func (a *app) runRender(r *recipes.Recipe, f renderFlags) error {
	doc, err := templates.Render(r, templates.Options{})
	if err != nil {
		return cli.Exit(err.Error(), exitFailed)
	}
	if f.customData {
		cd, err := templates.CustomData(doc)
		if err != nil {
			return cli.Exit(fmt.Sprintf("%s: %v", r.Source, err), exitFailed)
		}
		_, err = fmt.Fprintln(a.stdout, cd)
		return err
	}
	_, err = a.stdout.Write(doc.CloudConfig)
	return err
}

func (a *app) versionCommand() *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print imagebake's version and commit",
		Flags: []cli.Flag{outputFlag()},
		Action: func(c *cli.Context) error {
			out, err := a.readOutput(c)
			if err != nil {
				return err
			}
			return a.runVersion(out)
		},
	}
}

func (a *app) runVersion(out output) error {
	info := buildinfo.Get()
	return out.result(info, func(w io.Writer) error {
		fmt.Fprintf(w, "imagebake %s", info.Version)
		if info.Commit != "" {
			fmt.Fprintf(w, " (commit %.12s", info.Commit)
			if info.Modified {
				fmt.Fprint(w, ", modified")
			}
			fmt.Fprint(w, ")")
		}
		_, err := fmt.Fprintf(w, " %s\n", info.Go)
		return err
	})
}
